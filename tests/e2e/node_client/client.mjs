// A Node.js Pantree client built from the .proto files alone (no generated code, no Python).
//
//   node tests/e2e/node_client/client.mjs <host:port> recommend|process-seed|bad-seed
//
// Prints ONE JSON line summarising the response and exits 0; on a gRPC error prints
// {"error": <status code name>, "details": <message>} and exits 2; on bad usage exits 64.
import { fileURLToPath } from "node:url";
import path from "node:path";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const DEADLINE_MS = 30_000;
const MS_PER_DAY = 86_400_000;

const definition = protoLoader.loadSync("pantree/orchestrator/v1/orchestrator_service.proto", {
  includeDirs: [path.join(ROOT, "protos"), path.join(ROOT, "third_party/googleapis")],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { OrchestratorService } = grpc.loadPackageDefinition(definition).pantree.orchestrator.v1;

const deadline = () => ({ deadline: Date.now() + DEADLINE_MS });

// Milk weekly, coffee every 3 weeks, toilet paper monthly, chocolate twice, ending today (UTC).
function rhythmicHistory(weeks = 20) {
  const products = [
    { product_id: "p-1001", name: "Whole Milk 1 Gallon", category: "dairy", unit_price_usd: 3.89 },
    { product_id: "p-2001", name: "Ground Coffee 12 oz", category: "coffee & tea", unit_price_usd: 8.99 },
    { product_id: "p-2302", name: "Toilet Paper 12 Rolls", category: "household", unit_price_usd: 13.99 },
    { product_id: "p-1805", name: "Dark Chocolate Bar", category: "snacks", unit_price_usd: 2.99 },
  ];
  const today = Math.floor(Date.now() / MS_PER_DAY);
  const start = today - weeks * 7;
  const events = []; // [epochDay, productIndex, quantity]
  for (let day = start; day < today; day += 7) events.push([day, 0, 2]);
  for (let day = start + 2; day < today; day += 21) events.push([day, 1, 1]);
  for (let day = start + 5; day < today; day += 30) events.push([day, 2, 1]);
  events.push([start + 10, 3, 1], [start + 60, 3, 1]);
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return {
    customer_id: "node-shopper",
    products,
    product_indexes: events.map((e) => e[1]),
    purchase_epoch_days: events.map((e) => e[0]),
    quantities: events.map((e) => e[2]),
  };
}

function recommend(client) {
  return new Promise((resolve, reject) => {
    client.Recommend({ history: rhythmicHistory(), max_offers: 5 }, deadline(), (err, response) =>
      err ? reject(err) : resolve(response),
    );
  }).then((response) => ({
    offers: response.offers.map((offer) => ({
      product_id: offer.product.product_id,
      delivery_interval_days: offer.delivery_interval_days,
    })),
    scored_by: response.scored_by,
  }));
}

async function processSeed(client, archetype) {
  const request = {
    archetype,
    seed_items: [{ name: "milk" }, { name: "eggs" }, { name: "bread" }],
    months: 4,
    random_seed: 9,
  };
  const events = [];
  const monthIndexes = [];
  // A server-streaming call is a Node Readable: iteration ends at OK and throws on an error status.
  for await (const response of client.ProcessSeed(request, deadline())) {
    events.push(response.event); // the name of the oneof member that is set
    if (response.event === "month") monthIndexes.push(response.month.month_index);
  }
  return { events, month_indexes: monthIndexes };
}

const COMMANDS = {
  recommend: (client) => recommend(client),
  "process-seed": (client) => processSeed(client, "busy_family"),
  "bad-seed": (client) => processSeed(client, "pirate"),
};

const [target, command] = process.argv.slice(2);
if (!target || !COMMANDS[command]) {
  console.error(`usage: client.mjs <host:port> ${Object.keys(COMMANDS).join("|")}`);
  process.exit(64);
}

const client = new OrchestratorService(target, grpc.credentials.createInsecure());
try {
  console.log(JSON.stringify(await COMMANDS[command](client)));
  process.exitCode = 0;
} catch (err) {
  if (typeof err.code !== "number") throw err; // not a gRPC status: crash loudly
  console.log(JSON.stringify({ error: grpc.status[err.code], details: err.details }));
  process.exitCode = 2;
} finally {
  client.close();
}
