// Runs @azure/identity's credentials against the managed identity endpoint
// and prints what each getToken() returned, as one JSON array.  Meant to run
// inside a VM's network namespace, where 169.254.169.254 is imdsd; the
// package's default endpoint is used (no AZURE_POD_IDENTITY_AUTHORITY_HOST,
// IDENTITY_ENDPOINT or MSI_ENDPOINT in the environment).  Modules come from
// build/clients/node_modules (NODE_PATH), installed by
// scripts/install-npm-clients.sh.
//
//   node azure_identity.js JOBS
//       JOBS is a JSON array of {"cred": "mi" | "dac", "scope": "...",
//       "clientId"?, "objectId"?, "resourceId"?}:
//       "mi"  new ManagedIdentityCredential({clientId, objectId, resourceId})
//             (no probe: MSAL asks the token endpoint directly);
//       "dac" new DefaultAzureCredential({managedIdentityClientId: clientId}),
//             with AZURE_TOKEN_CREDENTIALS=prod from the caller: the chain
//             every Azure SDK uses on a VM, whose managed identity first
//             probes the endpoint without the Metadata header.
//
// Each job gets a fresh credential (no token cache between jobs).  Failures
// are reported in the JSON (the error's name and message), not thrown.
"use strict";

const { ManagedIdentityCredential, DefaultAzureCredential } = require("@azure/identity");

function credential(job) {
	if (job.cred === "dac")
		return new DefaultAzureCredential({ managedIdentityClientId: job.clientId });
	const options = {};
	for (const k of ["clientId", "objectId", "resourceId"])
		if (job[k])
			options[k] = job[k];
	return new ManagedIdentityCredential(options);
}

async function run(job) {
	try {
		const t = await credential(job).getToken(job.scope);
		return { ok: true, token: t.token, expiresOnTimestamp: t.expiresOnTimestamp, tokenType: t.tokenType };
	} catch (err) {
		return { ok: false, name: err && err.name, error: String(err && err.message ? err.message : err) };
	}
}

(async () => {
	const out = [];
	for (const job of JSON.parse(process.argv[2]))
		out.push(await run(job));
	console.log(JSON.stringify(out));
})();
