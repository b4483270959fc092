// One-shot, idempotent initiation of the compose stack's replica set rs0, run by the
// mongo-init service:  mongosh --host mongo:27017 --quiet /scripts/init-replica-set.js
// It then waits until the member is a writable primary, so services that depend on
// mongo-init completing never see "not primary".
const config = { _id: "rs0", members: [{ _id: 0, host: "mongo:27017" }] };

try {
  rs.status();
  print("replica set rs0 already initiated");
} catch (e) {
  if (e.codeName !== "NotYetInitialized") {
    throw e;
  }
  try {
    rs.initiate(config); // mongosh throws on { ok: 0 }
  } catch (err) {
    // A concurrent run got there first.
    if (err.codeName !== "AlreadyInitialized") {
      throw err;
    }
  }
  print("replica set rs0 initiated");
}

const deadline = Date.now() + 60 * 1000;
while (!db.hello().isWritablePrimary) {
  if (Date.now() > deadline) {
    throw new Error("no writable primary within 60s");
  }
  sleep(500);
}
print("replica set rs0 has a writable primary");
