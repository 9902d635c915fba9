//! The deployment's AWS partition, handed to the SDK as a one-partition file.
//!
//! Every AWS SDK crate parses its built-in table of all partitions (JSON, with a
//! regular expression per partition) when its first client is built: 0.42 M
//! instructions per crate, 30% of a function's start-up. The generated resolver reads
//! `SMITHY_CLIENT_SDK_CUSTOM_PARTITION` (a file path) instead when it is set. The
//! template sets it, with `CONNECTIONS_AWS_PARTITION` = `AWS::Partition`, only for the
//! partitions below; this module writes that partition's entry to the file before the
//! first client is built. Outside such a deployment nothing is written or changed.
//!
//! The entries are the SDK's own (its `partitions.json` 1.1) without the lists of
//! region names, which carry only descriptions: a region resolves through its
//! partition's `regionRegex` to the same endpoints (pinned by tests/partition.rs).
//! A one-partition file has an empty `regionRegex`, which matches every region: with
//! one partition there is nothing to choose between (the SDK's own fallback for a
//! region no pattern matches is likewise a partition's plain outputs), and compiling
//! the real pattern was 30 k instructions of every start-up per SDK crate.

use std::sync::Once;

/// The variable the AWS SDK's generated endpoint resolver reads.
pub const SDK_VARIABLE: &str = "SMITHY_CLIENT_SDK_CUSTOM_PARTITION";
/// The partition the stack is deployed in (`AWS::Partition`).
pub const PARTITION_VARIABLE: &str = "CONNECTIONS_AWS_PARTITION";

struct Partition {
    id: &'static str,
    dns_suffix: &'static str,
    dual_stack_dns_suffix: &'static str,
    implicit_global_region: &'static str,
    region_regex: &'static str,
}

const PARTITIONS: &[Partition] = &[
    Partition {
        id: "aws",
        dns_suffix: "amazonaws.com",
        dual_stack_dns_suffix: "api.aws",
        implicit_global_region: "us-east-1",
        region_regex: r"^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$",
    },
    Partition {
        id: "aws-cn",
        dns_suffix: "amazonaws.com.cn",
        dual_stack_dns_suffix: "api.amazonwebservices.com.cn",
        implicit_global_region: "cn-northwest-1",
        region_regex: r"^cn\-\w+\-\d+$",
    },
    Partition {
        id: "aws-eusc",
        dns_suffix: "amazonaws.eu",
        dual_stack_dns_suffix: "api.amazonwebservices.eu",
        implicit_global_region: "eusc-de-east-1",
        region_regex: r"^eusc\-(de)\-\w+\-\d+$",
    },
    Partition {
        id: "aws-iso",
        dns_suffix: "c2s.ic.gov",
        dual_stack_dns_suffix: "api.aws.ic.gov",
        implicit_global_region: "us-iso-east-1",
        region_regex: r"^us\-iso\-\w+\-\d+$",
    },
    Partition {
        id: "aws-iso-b",
        dns_suffix: "sc2s.sgov.gov",
        dual_stack_dns_suffix: "api.aws.scloud",
        implicit_global_region: "us-isob-east-1",
        region_regex: r"^us\-isob\-\w+\-\d+$",
    },
    Partition {
        id: "aws-iso-e",
        dns_suffix: "cloud.adc-e.uk",
        dual_stack_dns_suffix: "api.cloud-aws.adc-e.uk",
        implicit_global_region: "eu-isoe-west-1",
        region_regex: r"^eu\-isoe\-\w+\-\d+$",
    },
    Partition {
        id: "aws-iso-f",
        dns_suffix: "csp.hci.ic.gov",
        dual_stack_dns_suffix: "api.aws.hci.ic.gov",
        implicit_global_region: "us-isof-south-1",
        region_regex: r"^us\-isof\-\w+\-\d+$",
    },
    Partition {
        id: "aws-us-gov",
        dns_suffix: "amazonaws.com",
        dual_stack_dns_suffix: "api.aws",
        implicit_global_region: "us-gov-west-1",
        region_regex: r"^us\-gov\-\w+\-\d+$",
    },
];

/// The partition ids this module knows (the template's condition lists the same).
pub fn known() -> impl Iterator<Item = &'static str> {
    PARTITIONS.iter().map(|p| p.id)
}

/// The SDK's partition file holding only partition `id`, or `None` for an id not known.
pub fn file_for(id: &str) -> Option<String> {
    PARTITIONS.iter().find(|p| p.id == id).map(|p| file_of(&[Partition { region_regex: "", ..*p }]))
}

/// Every known partition: what is written when the deployment's is not known, so
/// the file the SDK insists on reading always exists and always resolves (a region
/// matching none of them falls back to `aws`, as with the SDK's own table).
pub fn file_for_all() -> String {
    file_of(PARTITIONS)
}

fn file_of(partitions: &[Partition]) -> String {
    // Formatted rather than built as a JSON value (50 k instructions at start-up);
    // the ids and suffixes need no escaping, the regular expression's backslashes do.
    let entries: Vec<String> = partitions
        .iter()
        .map(|p| {
            format!(
                r#"{{"id":"{id}","outputs":{{"dnsSuffix":"{dns}","dualStackDnsSuffix":"{dual}","implicitGlobalRegion":"{global}","name":"{id}","supportsDualStack":true,"supportsFIPS":true}},"regionRegex":"{regex}","regions":{{}}}}"#,
                id = p.id,
                dns = p.dns_suffix,
                dual = p.dual_stack_dns_suffix,
                global = p.implicit_global_region,
                regex = p.region_regex.replace('\\', "\\\\"),
            )
        })
        .collect();
    format!(r#"{{"partitions":[{}],"version":"1.1"}}"#, entries.join(","))
}

/// Writes the deployment's partition to the file the SDK will read, once per
/// process, before the first client is built. Does nothing unless
/// `SMITHY_CLIENT_SDK_CUSTOM_PARTITION` is set (as the template sets it): the SDK
/// then panics at its first client if the file is missing, so with the partition
/// unnamed or unknown every known partition is written instead; only a failed
/// write (an unwritable path) is left for the SDK to report.
pub fn prepare(lookup: impl Fn(&str) -> Option<String>) {
    static DONE: Once = Once::new();
    let Some(path) = lookup(SDK_VARIABLE) else {
        return;
    };
    DONE.call_once(|| {
        let named = lookup(PARTITION_VARIABLE);
        let file = match named.as_deref().and_then(file_for) {
            Some(file) => file,
            None => {
                tracing::warn!(
                    partition = named.as_deref().unwrap_or(""),
                    "AWS partition not named or not known; writing every partition"
                );
                file_for_all()
            }
        };
        if let Err(error) = std::fs::write(&path, file) {
            tracing::error!(%error, path, "could not write the AWS partition file");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_known_partition_has_a_one_entry_file_and_others_none() {
        for id in known() {
            let file: serde_json::Value = serde_json::from_str(&file_for(id).unwrap()).unwrap();
            assert_eq!(file["partitions"].as_array().unwrap().len(), 1);
            assert_eq!(file["partitions"][0]["id"], id);
            assert_eq!(file["partitions"][0]["outputs"]["name"], id);
            assert_eq!(file["partitions"][0]["regionRegex"], "", "one partition: every region is its");
        }
        assert_eq!(known().count(), 8);
        assert!(file_for("aws-new").is_none());
        let all: serde_json::Value = serde_json::from_str(&file_for_all()).unwrap();
        let ids: Vec<_> = all["partitions"].as_array().unwrap().iter().map(|p| p["id"].clone()).collect();
        assert_eq!(ids, known().collect::<Vec<_>>());
        for (written, partition) in all["partitions"].as_array().unwrap().iter().zip(PARTITIONS) {
            assert_eq!(written["regionRegex"], partition.region_regex, "backslashes survive the JSON");
        }
    }

    #[test]
    fn the_file_is_written_only_when_the_sdk_is_told_to_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partition.json");
        let path_text = path.to_string_lossy().into_owned();
        prepare(|name| (name == PARTITION_VARIABLE).then(|| "aws".to_owned()));
        assert!(!path.exists(), "without the SDK's variable the SDK's own table is used");
        // The partition unnamed: every partition, so the SDK never finds the file missing.
        prepare(|name| (name == SDK_VARIABLE).then(|| path_text.clone()));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), file_for_all());
    }
}
