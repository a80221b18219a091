// Run graphql-http's GraphQL-over-HTTP server audits against URL and print one JSON line per
// audit ({id, name, status, reason}). Usage: node audit.mjs HTTP_URL
// Exits 1 when any MUST audit fails (status "error"); SHOULD audits only warn.
import { serverAudits } from "graphql-http";

const [url] = process.argv.slice(2);
if (!url) {
  console.error("usage: node audit.mjs HTTP_URL");
  process.exit(2);
}

let failed = 0;
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  const result = await audit.fn();
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== "ok") {
    line.reason = result.reason;
    if (result.response) line.response = { status: result.response.status, body: await result.response.text() };
  }
  if (result.status === "error") failed += 1;
  console.log(JSON.stringify(line));
}
process.exit(failed ? 1 : 0);
