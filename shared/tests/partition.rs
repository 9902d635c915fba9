//! Pins what `SMITHY_CLIENT_SDK_CUSTOM_PARTITION` does with the one-partition files
//! of `connections::partition`: every region of a partition, with and without FIPS
//! and dual-stack, resolves to the same DynamoDB, KMS and EventBridge endpoints as
//! with the SDK's built-in table. The SDK reads the variable once per process, so
//! each table is resolved in a child process running this same test.

use std::collections::BTreeMap;
use std::process::Command;

use connections::partition::{SDK_VARIABLE, file_for, file_for_all, known};

const CHILD: &str = "PARTITION_TEST_CHILD";

/// Regions of each partition: outside `aws` every region the SDK lists (2026-11),
/// in `aws` a sample of 21 of its 34, one or more per prefix.
const REGIONS: &[(&str, &[&str])] = &[
    (
        "aws",
        &[
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
            "af-south-1",
            "ap-east-1",
            "ap-east-2",
            "ap-northeast-1",
            "ap-south-2",
            "ap-southeast-7",
            "ca-central-1",
            "ca-west-1",
            "eu-central-2",
            "eu-north-1",
            "eu-south-2",
            "eu-west-3",
            "il-central-1",
            "me-central-1",
            "me-south-1",
            "mx-central-1",
            "sa-east-1",
        ],
    ),
    ("aws-cn", &["cn-north-1", "cn-northwest-1"]),
    ("aws-eusc", &["eusc-de-east-1"]),
    ("aws-iso", &["us-iso-east-1", "us-iso-west-1"]),
    ("aws-iso-b", &["us-isob-east-1", "us-isob-west-1"]),
    ("aws-iso-e", &["eu-isoe-west-1"]),
    ("aws-iso-f", &["us-isof-east-1", "us-isof-south-1"]),
    ("aws-us-gov", &["us-gov-east-1", "us-gov-west-1"]),
];

macro_rules! resolve {
    ($sdk:ident, $region:expr, $fips:expr, $dual:expr) => {{
        use $sdk::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
        let params = Params::builder().region($region).use_fips($fips).use_dual_stack($dual).build().unwrap();
        match DefaultResolver::new().resolve_endpoint(&params).await {
            Ok(endpoint) => endpoint.url().to_owned(),
            Err(error) => format!("error: {error}"),
        }
    }};
}

/// `service region fips dual` → URL (or the resolver's error), for every region above.
async fn resolve_all() -> BTreeMap<String, String> {
    let mut resolved = BTreeMap::new();
    for (_, regions) in REGIONS {
        for region in *regions {
            for (fips, dual) in [(false, false), (true, false), (false, true), (true, true)] {
                let key = |service: &str| format!("{service} {region} {fips} {dual}");
                resolved.insert(key("dynamodb"), resolve!(aws_sdk_dynamodb, *region, fips, dual));
                resolved.insert(key("kms"), resolve!(aws_sdk_kms, *region, fips, dual));
                resolved.insert(key("eventbridge"), resolve!(aws_sdk_eventbridge, *region, fips, dual));
            }
        }
    }
    resolved
}

fn in_child(partition_file: Option<&std::path::Path>) -> BTreeMap<String, String> {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", "one_partition_files_resolve_as_the_built_in_table", "--nocapture", "--test-threads=1"]);
    command.env(CHILD, "1").env_remove(SDK_VARIABLE);
    if let Some(path) = partition_file {
        command.env(SDK_VARIABLE, path);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let json = stdout
        .lines()
        .find_map(|line| line.split_once("RESOLVED ").map(|(_, json)| json))
        .expect("the child prints its table");
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn one_partition_files_resolve_as_the_built_in_table() {
    if std::env::var_os(CHILD).is_some() {
        println!("RESOLVED {}", serde_json::to_string(&resolve_all().await).unwrap());
        return;
    }
    let built_in = in_child(None);
    assert!(built_in["dynamodb cn-north-1 false false"].ends_with(".amazonaws.com.cn"), "{built_in:?}");
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(known().collect::<Vec<_>>(), REGIONS.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    for (id, regions) in REGIONS {
        let path = dir.path().join(format!("{id}.json"));
        std::fs::write(&path, file_for(id).unwrap()).unwrap();
        let pinned = in_child(Some(&path));
        if *id == "aws" {
            // Proof that each SDK crate reads the file: a region of another partition now resolves in aws.
            for service in ["dynamodb", "kms", "events"] {
                let crate_name = if service == "events" { "eventbridge" } else { service };
                let key = format!("{crate_name} cn-north-1 false false");
                assert_eq!(pinned[&key], format!("https://{service}.cn-north-1.amazonaws.com"), "{key}");
            }
        }
        for (key, url) in &pinned {
            let region = key.split(' ').nth(1).unwrap();
            if regions.contains(&region) {
                assert_eq!(url, &built_in[key], "{key} with only {id}");
            }
        }
    }
    // What is written when the deployment's partition is not known: every region as built in.
    let path = dir.path().join("all.json");
    std::fs::write(&path, file_for_all()).unwrap();
    assert_eq!(in_child(Some(&path)), built_in);
}

#[test]
fn the_template_sets_the_variable_only_for_partitions_known_here() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
    let template = std::fs::read_to_string(path).unwrap();
    let condition = template.split("KnownPartition: !Or").nth(1).expect("the KnownPartition condition");
    let listed: Vec<&str> = condition
        .lines()
        .skip(1)
        .map_while(|line| line.trim().strip_prefix("- !Equals [!Ref AWS::Partition, "))
        .map(|rest| rest.trim_end_matches(']'))
        .collect();
    assert_eq!(listed, known().collect::<Vec<_>>());
    assert!(template.contains(&format!("{SDK_VARIABLE}: !If [KnownPartition, ")));
    assert!(template.contains("CONNECTIONS_AWS_PARTITION: !Ref AWS::Partition"));
}
