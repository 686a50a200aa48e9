// Runs the AWS SDK for JavaScript v3's own IMDS clients and prints what they
// got as one JSON object.  Meant to run inside a VM's network namespace,
// where 169.254.169.254 is imdsd; the packages' default endpoint is used.
// Modules come from build/clients/node_modules (NODE_PATH), installed by
// scripts/install-npm-clients.sh.
//
//   node aws_sdk_js.js creds MODULE
//       fromInstanceMetadata() of MODULE (@aws-sdk/credential-provider-imds
//       or @smithy/credential-provider-imds, which the SDK uses today):
//       token PUT, role name, the role's credentials.
//   node aws_sdk_js.js request [--no-token] PATH...
//       @aws-sdk/ec2-metadata-service MetadataService.request() of each
//       PATH ("/latest/meta-data/..."), which puts a fresh token before
//       every request; --no-token sets disableFetchToken (IMDSv1).
//
// Failures are reported in the JSON (error message and HTTP status), not
// thrown, so the test can tell "refused" from "wrong body".  The process is
// left to end by itself: a connection the server never closes keeps Node
// alive, and the test's timeout then catches it.
"use strict";

// The SDKs' defaults are 1000 ms; a busy test machine needs more.  The
// container tests set less, since there every token PUT times out.
const TIMEOUT_MS = Number(process.env.IMDS_JS_TIMEOUT_MS || 5000);

function failure(err) {
	return {
		ok: false,
		error: String(err && err.message ? err.message : err),
		status: (err && (err.statusCode || (err.$metadata && err.$metadata.httpStatusCode))) || null,
	};
}

async function creds(moduleName) {
	const { fromInstanceMetadata } = require(moduleName);
	try {
		const c = await fromInstanceMetadata({ timeout: TIMEOUT_MS, maxRetries: 0 })();
		return {
			ok: true,
			accessKeyId: c.accessKeyId,
			secretAccessKey: c.secretAccessKey,
			sessionToken: c.sessionToken,
			expiration: c.expiration ? c.expiration.toISOString() : null,
			accountId: c.accountId === undefined ? null : c.accountId,
		};
	} catch (err) {
		return failure(err);
	}
}

async function request(args) {
	const { MetadataService } = require("@aws-sdk/ec2-metadata-service");
	const noToken = args[0] === "--no-token";
	const paths = noToken ? args.slice(1) : args;
	const svc = new MetadataService({
		httpOptions: { timeout: TIMEOUT_MS },
		disableFetchToken: noToken,
		retries: 0,
	});
	const out = {};
	for (const p of paths) {
		try {
			out[p] = { ok: true, body: await svc.request(p, {}) };
		} catch (err) {
			out[p] = failure(err);
		}
	}
	return out;
}

async function main() {
	const [cmd, ...args] = process.argv.slice(2);
	let out;
	if (cmd === "creds" && args.length === 1) {
		out = await creds(args[0]);
	} else if (cmd === "request" && args.length > 0) {
		out = await request(args);
	} else {
		process.stderr.write("usage: aws_sdk_js.js creds MODULE | request [--no-token] PATH...\n");
		process.exitCode = 2;
		return;
	}
	process.stdout.write(JSON.stringify(out, null, 1) + "\n");
}

main();
