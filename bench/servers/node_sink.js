// Node smtp-server sink for bench/load.py: `node node_sink.js --port N --stats PATH`.
// Counts messages and bytes, prints nothing, writes {"messages","bytes","impl"} on SIGUSR2.
"use strict";
const fs = require("fs");
const { SMTPServer } = require("smtp-server");
const pkg = require("smtp-server/package.json");

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) {
    throw new Error(`missing ${name}`);
  }
  return process.argv[i + 1];
}

const port = Number(arg("--port"));
const statsPath = arg("--stats");
let messages = 0;
let bytes = 0;

const server = new SMTPServer({
  name: "bench",
  banner: "bench",
  logger: false,
  // No AUTH, no STARTTLS: a plain sink, like the other peers.
  disabledCommands: ["AUTH", "STARTTLS"],
  authOptional: true,
  // smtp-server resolves every client's address by default; the other sinks do not.
  disableReverseLookup: true,
  size: 64 * 1024 * 1024,
  onData(stream, session, callback) {
    let n = 0;
    stream.on("data", (chunk) => {
      n += chunk.length;
    });
    stream.on("end", () => {
      if (stream.sizeExceeded) {
        const err = new Error("552 message too big");
        err.responseCode = 552;
        callback(err);
        return;
      }
      messages += 1;
      bytes += n;
      callback(null, "OK");
    });
  },
});
server.on("error", () => {});

process.on("SIGUSR2", () => {
  const tmp = `${statsPath}.tmp`;
  fs.writeFileSync(
    tmp,
    JSON.stringify({ messages, bytes, impl: `node ${process.version} smtp-server ${pkg.version}` })
  );
  fs.renameSync(tmp, statsPath);
});
process.on("SIGTERM", () => process.exit(0));

server.listen(port, "127.0.0.1", 1024);
