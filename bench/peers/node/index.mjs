// The Node.js peer of the `list` function's GET /connections, for scripts/bench.
//
// A Lambda custom-runtime loop (Runtime API 2018-06-01) written as a team would
// write it with the AWS SDK for JavaScript v3: its DynamoDB client is created at
// start-up (as the Rust `list` does; it holds no KMS client), then each event runs the same Query
// as the Rust DynamoStore::list: `#pk = :pk AND begins_with(#sk, :prefix)` with
// :pk = "USER#<sub>" and :prefix = "CONN#", projecting only the public fields.
//
// Endpoints, region and credentials come from the environment: the v3 SDK honours
// AWS_ENDPOINT_URL, AWS_REGION and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.
// The Runtime API is driven with Node's built-in http.

import http from "node:http";
import { DynamoDBClient, QueryCommand } from "@aws-sdk/client-dynamodb";

const [HOST, PORT] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const BASE = "/2018-06-01/runtime";
const TABLE = process.env.CONNECTIONS_TABLE;
const LIMIT = 50;
// shared/src/store/dynamo.rs PUBLIC_FIELDS: what list projects, never the secret.
const PUBLIC_FIELDS = [
  "id", "name", "provider", "url", "username", "credential_type", "resource", "account",
  "scopes", "capabilities", "warnings", "git_username", "expires_at", "status",
  "status_reason", "status_detail", "verified_at", "created_at", "updated_at", "version",
];
const NAMES = Object.fromEntries(PUBLIC_FIELDS.map((field, i) => [`#p${i}`, field]));
NAMES["#pk"] = "pk";
NAMES["#sk"] = "sk";
const PROJECTION = PUBLIC_FIELDS.map((_, i) => `#p${i}`).join(", ");

// Start-up work, as in the Rust list: the DynamoDB client before the first /next.
const dynamodb = new DynamoDBClient({});
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

// AttributeValue -> plain JSON (what @aws-sdk/util-dynamodb's unmarshall does).
function plain(value) {
  const [type, inner] = Object.entries(value)[0];
  switch (type) {
    case "S": return inner;
    case "N": return Number(inner);
    case "B": return Buffer.from(inner).toString("base64");
    case "BOOL": return inner;
    case "NULL": return null;
    case "L": return inner.map(plain);
    case "M": return Object.fromEntries(Object.entries(inner).map(([k, v]) => [k, plain(v)]));
    case "SS": return [...inner];
    case "NS": return inner.map(Number);
    case "BS": return inner.map((b) => Buffer.from(b).toString("base64"));
    default: throw new Error(`unknown AttributeValue type ${type}`);
  }
}

async function handle(event) {
  const owner = event.requestContext.authorizer.jwt.claims.sub;
  const output = await dynamodb.send(new QueryCommand({
    TableName: TABLE,
    KeyConditionExpression: "#pk = :pk AND begins_with(#sk, :prefix)",
    ExpressionAttributeNames: NAMES,
    ExpressionAttributeValues: { ":pk": { S: `USER#${owner}` }, ":prefix": { S: "CONN#" } },
    ProjectionExpression: PROJECTION,
    Limit: LIMIT,
  }));
  const items = (output.Items ?? []).map((item) => plain({ M: item }));
  return {
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ items }),
  };
}

function request(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request({
      host: HOST, port: PORT, path: BASE + path, method, agent,
      headers: payload ? { "content-type": "application/json", "content-length": payload.length, ...headers } : headers,
    }, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("end", () => resolve({ headers: res.headers, status: res.statusCode, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(payload);
  });
}

for (;;) {
  const next = await request("GET", "/invocation/next");
  if (next.status !== 200) throw new Error(`/invocation/next answered ${next.status}`);
  const id = next.headers["lambda-runtime-aws-request-id"];
  let result;
  try {
    result = await handle(JSON.parse(next.body));
  } catch (error) {
    await request("POST", `/invocation/${id}/error`,
      { errorMessage: String(error?.message ?? error), errorType: error?.name ?? "Error", stackTrace: String(error?.stack ?? "").split("\n") },
      { "lambda-runtime-function-error-type": "Unhandled" });
    continue;
  }
  await request("POST", `/invocation/${id}/response`, result);
}
