// Checks deploy/kubernetes offline: every resource that kustomization.yaml lists (and
// every *.example.yaml beside it) against the Kubernetes OpenAPI schemas that the npm
// package kubernetes-models carries, fields the schemas do not know included, then the
// rules of this deployment that no schema states (selectors, ports, $(VAR)s, taskrtd's
// flags). Prints each check; exits 1 with every failure named, 2 on a usage error.
//
//   node validate.mjs [--dir DIR] [--taskrtd BIN | --taskrtd-help FILE]
//
// tests/deploy/kubernetes_test.sh runs it with the packages of package-lock.json in the
// build directory; by hand, `npm ci` here first (node_modules/ is not committed).
// DIR defaults to the repository's deploy/kubernetes. taskrtd's flags are checked
// against `BIN --help` (default $TASKRTD, else <repo>/build/bin/taskrtd) or the saved
// help text FILE ($TASKRTD_HELP); without either, that one check is skipped.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const failures = [];
const fail = (where, message) => failures.push(`${where}: ${message}`);
const ok = (message) => console.log(`ok: ${message}`);
// ok(message) when the check that began with `before` failures added none.
const passed = (before, message) => failures.length === before && ok(message);

function parseArgs(argv) {
  const options = {
    dir: path.join(REPO, "deploy/kubernetes"),
    taskrtd: process.env.TASKRTD || path.join(REPO, "build/bin/taskrtd"),
    help: process.env.TASKRTD_HELP || "",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    const key = { "--dir": "dir", "--taskrtd": "taskrtd", "--taskrtd-help": "help" }[flag];
    if (key === undefined || value === undefined) {
      console.error(`usage: node validate.mjs [--dir DIR] [--taskrtd BIN | --taskrtd-help FILE]` +
                    ` (got ${JSON.stringify(argv.slice(i))})`);
      process.exit(2);
    }
    options[key] = path.resolve(value);
  }
  return options;
}

// --- Loading ---------------------------------------------------------------------

// The YAML documents of `file` as plain objects. YAML 1.1, as kubectl reads it (0440 is
// octal, `yes` a boolean); a syntax error or a duplicate key is a failure.
function loadDocuments(file) {
  const where = path.basename(file);
  const docs = YAML.parseAllDocuments(readFileSync(file, "utf8"), { version: "1.1" });
  const result = [];
  for (const doc of docs) {
    for (const e of [...doc.errors, ...doc.warnings]) fail(where, `YAML: ${e.message}`);
    if (doc.errors.length > 0) continue;
    const value = doc.toJS();
    if (value !== null && value !== undefined) result.push({ file: where, value });
  }
  return result;
}

function readKustomization(dir) {
  const file = path.join(dir, "kustomization.yaml");
  if (!existsSync(file)) {
    fail(file, "missing (--dir names the folder of kustomization.yaml)");
    return [];
  }
  const [doc] = loadDocuments(file);
  const k = doc?.value ?? {};
  if (k.kind !== "Kustomization") {
    fail("kustomization.yaml", `kind is ${k.kind}, not Kustomization`);
  }
  // images: and namespace: change nothing that the rules below check.
  const read = ["apiVersion", "kind", "resources", "images", "namespace"];
  const unsupported = Object.keys(k).filter((key) => !read.includes(key));
  if (unsupported.length > 0) {
    fail("kustomization.yaml", `validate.mjs does not apply ${unsupported.join(", ")}: ` +
         "teach it to, or put them in an overlay of your own");
  }
  const resources = k.resources ?? [];
  for (const r of resources) {
    if (!existsSync(path.join(dir, r)) || !/\.ya?ml$/.test(r)) {
      fail("kustomization.yaml", `resource ${r} is not a YAML file in ${dir}`);
    }
  }
  return resources.filter((r) => existsSync(path.join(dir, r)));
}

// Every YAML file in `dir` that holds a manifest (apiVersion and kind) is listed in the
// kustomization, except *.example.yaml, which must not be (an apply would install the
// example's placeholders). Returns the documents of both kinds of file.
function loadManifests(dir, listed) {
  const docs = [];
  const before = failures.length;
  for (const name of readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)).sort()) {
    if (name === "kustomization.yaml") continue;
    const fileDocs = loadDocuments(path.join(dir, name));
    const isManifest = fileDocs.some((d) => d.value.apiVersion && d.value.kind);
    const example = /\.example\.ya?ml$/.test(name);
    if (example && listed.includes(name)) {
      fail(name, "an example (placeholders) is listed in kustomization.yaml: take it out");
    } else if (isManifest && !example && !listed.includes(name)) {
      fail(name, "holds a manifest but is not listed in kustomization.yaml's resources");
    }
    if (isManifest) docs.push(...fileDocs.map((d) => ({ ...d, example })));
  }
  passed(before,
         `kustomization.yaml lists ${listed.join(", ")}; every other manifest is an example`);
  return docs;
}

// --- Schemas ---------------------------------------------------------------------

// A copy of `value` whose objects record which of their keys a validator read. The
// compiled validators read each property their schema names and enumerate the keys of
// maps (labels, data, resources.limits), so a key never read is one the schema does not
// have: a typo that Kubernetes' strict field validation would refuse at apply time.
function tracked(value, where, records) {
  if (Array.isArray(value)) return value.map((v, i) => tracked(v, `${where}[${i}]`, records));
  if (value === null || typeof value !== "object") return value;
  const record = { where, keys: Object.keys(value), read: new Set(), enumerated: false };
  records.push(record);
  const copy = {};
  for (const [k, v] of Object.entries(value)) copy[k] = tracked(v, `${where}.${k}`, records);
  return new Proxy(copy, {
    get(t, p, r) { record.read.add(p); return Reflect.get(t, p, r); },
    has(t, p) { record.read.add(p); return Reflect.has(t, p); },
    getOwnPropertyDescriptor(t, p) {
      record.read.add(p);
      return Reflect.getOwnPropertyDescriptor(t, p);
    },
    ownKeys(t) { record.enumerated = true; return Reflect.ownKeys(t); },
  });
}

async function modelClass(apiVersion, kind) {
  // Shapes only, so that no other file of the package (or a path) can be imported.
  const wellFormed = /^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion ?? "") &&
                     /^[A-Z][A-Za-z0-9]*$/.test(kind ?? "");
  if (!wellFormed) return null;
  try {
    const Model = (await import(`kubernetes-models/${apiVersion}/${kind}`))[kind];
    return Model?.kind === kind && Model?.apiVersion === apiVersion ? Model : null;
  } catch {
    return null;
  }
}

async function validateSchemas(docs) {
  for (const { file, value } of docs) {
    const where = `${file}: ${value.kind}/${value.metadata?.name}`;
    const Model = await modelClass(value.apiVersion, value.kind);
    if (Model === null) {
      fail(where, `unknown apiVersion/kind ${value.apiVersion}/${value.kind} ` +
           "(no such resource in kubernetes-models)");
      continue;
    }
    const records = [];
    try {
      Model.prototype.validate.call(tracked(value, "", records));
    } catch (e) {
      fail(where, `schema: ${e.message}`);
      continue;  // a failed validation stops reading early: unread keys would mislead
    }
    // The outermost unknown field only: nothing below it was read either.
    const unknown = records.filter((r) => !r.enumerated)
      .flatMap((r) => r.keys.filter((k) => !r.read.has(k)).map((k) => `${r.where}.${k}`.slice(1)))
      .filter((p, _, all) => !all.some((q) => p.startsWith(`${q}.`) || p.startsWith(`${q}[`)));
    if (unknown.length > 0) {
      fail(where, `unknown field(s) for ${value.kind}: ${unknown.join(", ")}`);
    } else {
      ok(`${where} matches the ${value.apiVersion} ${value.kind} schema`);
    }
  }
}

// --- Rules of this deployment -------------------------------------------------------

const byKind = (docs, kind) => docs.filter((d) => d.value.kind === kind).map((d) => d.value);
const matches = (selector, labels) =>
  Object.keys(selector ?? {}).length > 0 &&
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);
const show = (value) => JSON.stringify(value);

function checkSelectors(docs, sts, podLabels) {
  const before = failures.length;
  const where = `StatefulSet/${sts.metadata.name}`;
  if (!matches(sts.spec.selector?.matchLabels, podLabels)) {
    fail(where,
         `selector ${show(sts.spec.selector)} does not match the pod labels ${show(podLabels)}`);
  }
  const headless = byKind(docs, "Service").find((s) => s.metadata.name === sts.spec.serviceName);
  if (headless === undefined) {
    fail(where, `serviceName ${sts.spec.serviceName} is no Service of the kustomization`);
  } else if (headless.spec.clusterIP !== "None" ||
             headless.spec.publishNotReadyAddresses !== true) {
    fail(`Service/${headless.metadata.name}`,
         "the StatefulSet's Service must be headless (clusterIP: None) with " +
         "publishNotReadyAddresses: true, so that DNS lists every daemon");
  }
  for (const s of byKind(docs, "Service")) {
    if (!matches(s.spec.selector, podLabels)) {
      fail(`Service/${s.metadata.name}`,
           `selector ${show(s.spec.selector)} does not match the pod labels ${show(podLabels)}`);
    }
  }
  for (const p of byKind(docs, "PodDisruptionBudget")) {
    if (!matches(p.spec.selector?.matchLabels, podLabels)) {
      fail(`PodDisruptionBudget/${p.metadata.name}`,
           `selector ${show(p.spec.selector)} does not match the pod labels ${show(podLabels)}`);
    }
  }
  passed(before,
         "selectors of the StatefulSet, Services and PodDisruptionBudgets match the pod labels; " +
         `serviceName ${sts.spec.serviceName} is headless and publishes not-ready pods`);
}

// A port reference (number or name) that names a port of `container`.
const hasPort = (container, port) =>
  (container.ports ?? []).some((p) =>
    p.containerPort === port || (typeof port === "string" && p.name === port));

function checkPorts(docs, container) {
  const before = failures.length;
  const where = `container ${container.name}`;
  for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    const p = container[probe];
    const port = p?.grpc?.port ?? p?.httpGet?.port ?? p?.tcpSocket?.port;
    if (p === undefined) fail(where, `has no ${probe}`);
    else if (!hasPort(container, port)) fail(where, `${probe} port ${port} is none of its ports`);
  }
  for (const s of byKind(docs, "Service")) {
    for (const sp of s.spec.ports ?? []) {
      const target = sp.targetPort ?? sp.port;
      if (!hasPort(container, target)) {
        fail(`Service/${s.metadata.name}`,
             `port ${sp.name} targets ${target}, which is no port of ${where}`);
      }
    }
  }
  passed(before, `${where}: probes and Service target ports name its ports`);
}

// Names an env var of `container` defines, with those of its envFrom ConfigMaps.
function envNames(docs, container) {
  const names = new Set((container.env ?? []).map((e) => e.name));
  for (const from of container.envFrom ?? []) {
    const cm = byKind(docs, "ConfigMap").find((c) => c.metadata.name === from.configMapRef?.name);
    for (const key of Object.keys(cm?.data ?? {})) names.add(`${from.prefix ?? ""}${key}`);
  }
  return names;
}

function checkEnv(docs, container) {
  const before = failures.length;
  const where = `container ${container.name}`;
  const defined = envNames(docs, container);
  const words = [...(container.command ?? []), ...(container.args ?? [])];
  // $(VAR) is expanded; $$(VAR) is a literal "$(VAR)".
  const used = words.flatMap((w) =>
    [...w.replaceAll("$$", "").matchAll(/\$\(([^)]*)\)/g)].map((m) => m[1]));
  for (const v of used.filter((u) => !defined.has(u))) {
    fail(where, `$(${v}) in its command/args is not defined in its env ` +
         "(Kubernetes would pass it on literally)");
  }
  for (const e of container.env ?? []) {
    const ref = e.valueFrom?.configMapKeyRef ?? e.valueFrom?.secretKeyRef;
    if (ref === undefined || ref.optional) continue;
    const kind = e.valueFrom.configMapKeyRef ? "ConfigMap" : "Secret";
    const source = byKind(docs, kind).find((d) => d.metadata.name === ref.name);
    const keys = { ...source?.data, ...source?.stringData };
    if (!(ref.key in keys)) fail(where, `env ${e.name}: ${kind} ${ref.name} has no key ${ref.key}`);
  }
  passed(before,
         `${where}: ${used.length} $(VAR)s defined in env; its ConfigMap/Secret keys exist`);
}

// Every volumeMount names a volume or a claim template; Secret and ConfigMap volumes name
// one of the kustomization (or an example: the Secret is made by hand).
function checkVolumes(docs, sts) {
  const before = failures.length;
  const pod = sts.spec.template.spec;
  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  const claims = new Set((sts.spec.volumeClaimTemplates ?? []).map((c) => c.metadata.name));
  for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
    for (const m of c.volumeMounts ?? []) {
      if (!volumes.has(m.name) && !claims.has(m.name)) {
        fail(`container ${c.name}`, `volumeMount ${m.name} names no volume or volumeClaimTemplate`);
      }
    }
  }
  for (const [name, v] of volumes) {
    const [kind, ref] = v.secret ? ["Secret", v.secret.secretName]
                      : v.configMap ? ["ConfigMap", v.configMap.name] : [];
    if (kind && !byKind(docs, kind).some((d) => d.metadata.name === ref)) {
      fail(`volume ${name}`, `${kind} ${ref} is neither in the kustomization nor an example`);
    }
  }
  passed(before, "volume mounts name volumes; their Secrets and ConfigMaps exist");
}

// { "--flag": value or undefined } from args like --flag=value or --flag value.
function flagsOf(args) {
  const flags = new Map();
  for (let i = 0; i < args.length; ++i) {
    if (!args[i].startsWith("--")) continue;
    const eq = args[i].indexOf("=");
    if (eq > 0) flags.set(args[i].slice(0, eq), args[i].slice(eq + 1));
    else flags.set(args[i], args[i + 1]?.startsWith("--") ? undefined : args[i + 1]);
  }
  return flags;
}

const portOf = (address) => Number(String(address).split(":").pop());

function checkDaemonFlags(pod, container, flags) {
  const before = failures.length;
  const where = `container ${container.name}`;
  const prefix = /^\$\(([^)]+)\)$/.exec(flags.get("--id-prefix") ?? "")?.[1];
  const prefixVar = (container.env ?? []).find((e) => e.name === prefix);
  if (prefixVar?.valueFrom?.fieldRef?.fieldPath !== "metadata.name") {
    fail(where, `--id-prefix is ${flags.get("--id-prefix")}: it must be $(VAR) with VAR from ` +
         "fieldRef metadata.name, so that task ids name their pod");
  }
  for (const flag of ["--listen", "--http", "--health-listen"]) {
    if (!flags.has(flag)) {
      fail(where, `no ${flag}`);
    } else if (!hasPort(container, portOf(flags.get(flag)))) {
      fail(where, `${flag} ${flags.get(flag)}: the port is none of its ports`);
    }
  }
  const health = portOf(flags.get("--health-listen"));
  for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    if (container[probe]?.grpc?.port !== health) {
      fail(where, `${probe} must be a grpc probe of the --health-listen port ${health}`);
    }
  }
  const drain = /^(\d+)s$/.exec(flags.get("--drain-timeout") ?? "")?.[1];
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  if (drain === undefined || Number(drain) >= grace) {
    fail(where, `--drain-timeout (${flags.get("--drain-timeout")}) must be whole seconds below ` +
         `terminationGracePeriodSeconds (${grace}), or the drain is cut by SIGKILL`);
  }
  passed(before,
         `${where}: --id-prefix from the pod name, address ports exposed, ` +
         "probes on --health-listen, " +
         `--drain-timeout ${flags.get("--drain-timeout")} < ${grace}s grace`);
}

// The long options of taskrtd's --help, or null (with a message) when there is none.
function taskrtdFlags({ taskrtd, help }) {
  const longOptions = (text) => new Set(text.match(/--[a-z0-9][a-z0-9-]*/g));
  if (help) return longOptions(readFileSync(help, "utf8"));
  if (!existsSync(taskrtd)) {
    console.log(`skipped: taskrtd's flags (no ${taskrtd}; build it, or pass --taskrtd BIN ` +
                "or --taskrtd-help FILE)");
    return null;
  }
  try {
    return longOptions(execFileSync(taskrtd, ["--help"], { encoding: "utf8" }));
  } catch (e) {
    fail(`${taskrtd} --help`, e.message.split("\n")[0]);
    return null;
  }
}

function checkTaskrtd(docs, options) {
  const [sts, ...more] = byKind(docs.filter((d) => !d.example), "StatefulSet");
  if (sts === undefined || more.length > 0) {
    fail("kustomization.yaml", `needs one StatefulSet, has ${more.length + (sts ? 1 : 0)}`);
    return;
  }
  const pod = sts.spec.template.spec;
  const daemon = pod.containers.find((c) => (c.command ?? [])[0]?.endsWith("/taskrtd"));
  if (daemon === undefined) {
    fail(`StatefulSet/${sts.metadata.name}`, "no container whose command is .../taskrtd");
    return;
  }
  checkSelectors(docs, sts, sts.spec.template.metadata?.labels);
  checkPorts(docs, daemon);
  for (const c of [...(pod.initContainers ?? []), ...pod.containers]) checkEnv(docs, c);
  checkVolumes(docs, sts);
  const flags = flagsOf(daemon.args ?? []);
  checkDaemonFlags(pod, daemon, flags);
  const known = taskrtdFlags(options);
  if (known === null) return;
  const unknown = [...flags.keys()].filter((f) => !known.has(f));
  if (unknown.length > 0) {
    fail(`container ${daemon.name}`,
         `taskrtd has no ${unknown.join(", ")} (its --help lists ${known.size} options)`);
  } else {
    ok(`taskrtd --help has all ${flags.size} flags of container ${daemon.name}`);
  }
}

// Ends the run when anything failed: each phase assumes the one before it passed (the
// rules read fields the schemas guarantee).
function finishIfFailed() {
  if (failures.length === 0) return;
  for (const f of failures) console.error(`FAIL: ${f}`);
  console.error(`${failures.length} failure(s) in ${options.dir}`);
  process.exit(1);
}

const options = parseArgs(process.argv.slice(2));
const listed = readKustomization(options.dir);
finishIfFailed();
const docs = loadManifests(options.dir, listed);
finishIfFailed();
await validateSchemas(docs);
finishIfFailed();
checkTaskrtd(docs, options);
finishIfFailed();
console.log(`all checks passed: ${docs.length} resources in ${options.dir}`);
