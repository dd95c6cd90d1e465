// Generate the snapshot of every constraint StructureDefinition of a FHIR package with
// fhir-snapshot-generator (npm), from a local FHIR package cache (service/conformance/npm_tools.py).
// Usage: node snapshots.cjs <cacheDir> <name@version>   Prints {url: snapshot.element[]} as JSON.
// Exit 1 when a snapshot of ours could not be generated (FSG warns and falls back to the source) or on an error.
const { FhirPackageExplorer } = require("fhir-package-explorer");
const { FhirSnapshotGenerator } = require("fhir-snapshot-generator");

(async () => {
  const [cachePath, spec] = process.argv.slice(2);
  const problems = [];
  const logger = {
    debug: () => {},
    info: () => {},
    warn: (m) => problems.push(`warn: ${m}`),
    error: (m) => problems.push(`error: ${m}`),
  };
  const fpe = await FhirPackageExplorer.create({
    context: [spec], cachePath, fhirVersion: "4.0.1", skipExamples: true, logger,
    registryUrl: "http://127.0.0.1:9", // everything comes from the cache: never a registry
  });
  const fsg = await FhirSnapshotGenerator.create({ fpe, fhirVersion: "4.0.1", cacheMode: "none", logger });
  const [id, version] = spec.split("@");
  const metas = (await fpe.lookupMeta({ resourceType: "StructureDefinition", package: { id, version } })).filter(
    (m) => m.__packageId === id && m.__packageVersion === version
  );
  const out = {};
  for (const meta of metas.filter((m) => m.derivation === "constraint").sort((a, b) => a.url.localeCompare(b.url))) {
    const sd = await fsg.getSnapshot(meta.url);
    out[meta.url] = sd.snapshot.element;
  }
  // mCODE's own dependencies are stand-ins (no resources), so FSG warns about mCODE profiles we do not use;
  // a warning about one of ours (or any error) is a failure
  const ours = problems.filter((p) => p.startsWith("error") || Object.keys(out).some((url) => p.includes(url)));
  console.log(JSON.stringify({ snapshots: out, problems: ours, ignored: problems.length - ours.length }));
  process.exitCode = ours.length ? 1 : 0;
})().catch((e) => { console.error(e); process.exitCode = 2; });
