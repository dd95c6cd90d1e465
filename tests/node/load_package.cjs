// Load FHIR packages from a local FHIR package cache with fhir-package-loader (FPL 2) and resolve every
// canonical reference of one package. Usage: node load_package.cjs <cacheDir> <name#version> [<name#version>...]
// The last package is the one whose references are checked: those it authors (all but snapshots) must
// resolve; those its snapshots inherit from their bases are listed apart (unresolvedInherited).
// Prints JSON; exit 1 on any load error, error log line or unresolved authored reference.
const { BasePackageLoader, LoadStatus } = require("fhir-package-loader/dist/loader");
const { DiskBasedPackageCache } = require("fhir-package-loader/dist/cache");
const { createSQLJSPackageDB } = require("fhir-package-loader/dist/db");
const { DefaultRegistryClient } = require("fhir-package-loader/dist/registry");
const { BuildDotFhirDotOrgClient } = require("fhir-package-loader/dist/current");

function canonicals(node, path, out) {
  if (Array.isArray(node)) { node.forEach((v) => canonicals(v, path, out)); return; }
  if (node === null || typeof node !== "object") return;
  for (const [key, value] of Object.entries(node)) {
    const here = `${path}.${key}`;
    const refs = [];
    if (["baseDefinition", "valueSet"].includes(key) && typeof value === "string") refs.push(value);
    if (["profile", "targetProfile"].includes(key) && Array.isArray(value)) refs.push(...value);
    if (key === "extension" && Array.isArray(value)) value.forEach((e) => e && e.url && refs.push(e.url));
    if (key === "system" && typeof value === "string" && value.startsWith("https://fhir.spinecds.org/")) refs.push(value);
    refs.forEach((r) => out.push({ url: r.split("|")[0], where: here }));
    canonicals(value, here, out);
  }
}

(async () => {
  const [cacheDir, ...specs] = process.argv.slice(2);
  const messages = [];
  const log = (level, message) => messages.push({ level, message });
  const loader = new BasePackageLoader(
    await createSQLJSPackageDB(),
    new DiskBasedPackageCache(cacheDir, { log }),
    new DefaultRegistryClient({ log }),
    new BuildDotFhirDotOrgClient({ log }),
    { log }
  );
  const statuses = {};
  for (const spec of specs) {
    const [name, version] = spec.split("#");
    statuses[spec] = await loader.loadPackage(name, version);
  }
  const [name, version] = specs[specs.length - 1].split("#");
  const infos = loader.findResourceInfos("*", { scope: `${name}|${version}` });
  const refs = [];
  const inherited = []; // from snapshots: what the bases (mCODE) reference, resolvable with their dependencies
  const ids = [];
  for (const info of infos) {
    const resource = info.resourcePath ? loader.getResourceAtPath(info.resourcePath) : undefined;
    ids.push(`${info.resourceType}/${info.id}`);
    if (resource) {
      const { snapshot, ...authored } = resource;
      canonicals(authored, `${info.resourceType}/${info.id}`, refs);
      if (snapshot) canonicals(snapshot, `${info.resourceType}/${info.id}.snapshot`, inherited);
    }
  }
  const unresolvedInherited = [
    ...new Set(inherited.filter((r) => loader.findResourceInfo(r.url) === undefined).map((r) => r.url)),
  ].sort();
  const unresolved = {};
  refs.filter((r) => loader.findResourceInfo(r.url) === undefined).forEach((r) => {
    (unresolved[r.url] = unresolved[r.url] || []).push(r.where);
  });
  const loadErrors = Object.entries(statuses).filter(([, s]) => s !== LoadStatus.LOADED);
  const errors = messages.filter((m) => m.level === "error");
  const result = {
    statuses,
    resources: ids.length,
    references: refs.length,
    distinctReferences: [...new Set(refs.map((r) => r.url))].length,
    unresolved,
    unresolvedInherited,
    errors,
    warnings: messages.filter((m) => m.level === "warn"),
  };
  console.log(JSON.stringify(result, null, 2));
  process.exitCode = loadErrors.length || errors.length || Object.keys(unresolved).length ? 1 : 0;
})().catch((e) => { console.error(e); process.exitCode = 2; });
