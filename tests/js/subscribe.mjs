// Subscribe to contactUpdated with the standard `graphql-ws` client and print each event as a
// JSON line. Usage: node subscribe.mjs WS_URL API_KEY PHONE COUNT
// Prints "connected" once the server acknowledged the connection; exits 0 after COUNT events.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, apiKey, phone, count] = process.argv.slice(2);
if (!url || !apiKey || !phone || !count) {
  console.error("usage: node subscribe.mjs WS_URL API_KEY PHONE COUNT");
  process.exit(2);
}

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${apiKey}` },
  retryAttempts: 0,
  on: { connected: () => console.log("connected") },
});

let received = 0;
const query = "subscription($p: String!) { contactUpdated(phone: $p) { phone version tags } }";
try {
  for await (const result of client.iterate({ query, variables: { p: phone } })) {
    if (result.errors) {
      console.error(JSON.stringify(result.errors));
      process.exit(1);
    }
    console.log(JSON.stringify(result.data.contactUpdated));
    received += 1;
    if (received >= Number(count)) break; // leaving the loop completes the subscription
  }
} catch (error) {
  console.error(error instanceof Error ? error.message : JSON.stringify(error));
  process.exit(1);
} finally {
  await client.dispose();
}
process.exit(received >= Number(count) ? 0 : 1);
