// Runs one method of a Zapier app definition the way Zapier's runtime does: through
// zapier-platform-core's Lambda handler, with real HTTP.
// Usage: node zapier_runner.js <definition.json> <method path> <bundle.json> <out.json> [callback url]
// Writes {"results", "status"} (status "CALLBACK" when the step waits for its callback) or {"error"}
// to out.json: the runtime prints its own diagnostics on stdout.
'use strict';
const fs = require('fs');
const path = require('path');
const createLambdaHandler = require('zapier-platform-core/src/tools/create-lambda-handler');

const [definitionFile, method, bundleFile, outFile, callbackUrl] = process.argv.slice(2);
const app = JSON.parse(fs.readFileSync(path.resolve(definitionFile), 'utf8'));
const bundle = JSON.parse(fs.readFileSync(path.resolve(bundleFile), 'utf8'));
const write = (answer) => fs.writeFileSync(outFile, JSON.stringify(answer));

createLambdaHandler(app)({command: 'execute', method, bundle, callback_url: callbackUrl || undefined})
  .then((response) => write({results: response.results, status: response.status || null}))
  .catch((error) => write({error: {name: error.name, message: error.message}}));
