// Runs methods of a Zapier app definition the way Zapier's runtime does: through zapier-platform-core's
// Lambda handler, with real HTTP. One process runs many steps, as a warm Lambda of Zapier's does (starting
// node with the runtime costs about a second of CPU each time).
// Usage: node zapier_runner.js <definition.json> <answers fd>
// Reads one step a line on stdin, {"method", "bundle", "callback_url"}, and answers each with one line on
// the file descriptor <answers fd>: {"results", "status"} (status "CALLBACK" when the step waits for its
// callback) or {"error"}. The runtime prints its own diagnostics on stdout.
'use strict';
const fs = require('fs');
const path = require('path');
const readline = require('readline');
const createLambdaHandler = require('zapier-platform-core/src/tools/create-lambda-handler');

const app = JSON.parse(fs.readFileSync(path.resolve(process.argv[2]), 'utf8'));
const handler = createLambdaHandler(app);
const answers = Number(process.argv[3]);
const answer = (reply) => fs.writeSync(answers, JSON.stringify(reply) + '\n');

async function main() {
  for await (const line of readline.createInterface({input: process.stdin})) {
    if (!line.trim()) continue;
    const step = JSON.parse(line);
    try {
      const response = await handler({command: 'execute', method: step.method, bundle: step.bundle,
                                      callback_url: step.callback_url || undefined});
      answer({results: response.results, status: response.status || null});
    } catch (error) {
      answer({error: {name: error.name, message: error.message}});
    }
  }
}

main();
