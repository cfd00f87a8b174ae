// A comparison as JSON in knb's layout (InfraBuilder/k8s-bench-suite), so
// tooling written for knb reads it: one document whose `variants` are each
// a knb document (`node2node` for the bare underlay, `pod2pod` for the
// rest, bandwidth in Mbit/s, CPU in % of the host, RAM in MiB), and whose
// `weft` object carries every figure with its median, min, max, noisy flag
// and ratios, which knb's layout has no room for.
//
// COMPARE_JSON_SCHEMA describes the document (JSON Schema draft 2020-12,
// written beside it); validateCompareJson checks a document against it with
// a small interpreter of the keywords the schema uses, so the schema is the
// one statement of the shape and no validator dependency is needed.
import { weftVersion } from '../../core/package-root.js';
import { median } from '../stats.js';
import { METRICS, SPREAD_FLAG, type CompareResult, type MetricKey, type RepFigures, type VariantResult } from './types.js';

const SHARED_HOST_NOTE =
  'client and server are network namespaces on one host kernel (the weft lab): the CPU and RAM figures are host-wide, the same on both sides';

/** knb's date format: UTC, "YYYY-MM-DD HH:MM:SS". */
const knbDate = (iso: string): string => iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, '');

/** A number JSON can hold: NaN and infinities become null. */
const jsonNumber = (n: number | undefined): number | null => (n !== undefined && Number.isFinite(n) ? n : null);

const round = (n: number | null, digits: number): number | null => (n === null ? null : Number(n.toFixed(digits)));

function repMedian(reps: readonly RepFigures[], f: (rep: RepFigures) => number | undefined): number | null {
  const values = reps.map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
  return values.length ? median(values) : null;
}

/**
 * knb's per-test figures for one traffic kind: bandwidth received, and the
 * host's busy CPU in % during the run (CPU s per Gbit × Gbit/s ÷ cores,
 * per repetition, then the median). knb splits CPU into user, nice,
 * system, iowait and steal; weft measures the busy total only, so those are
 * null. RAM is the host's used memory.
 */
function knbTest(v: VariantResult, kind: 'tcp1' | 'udp', cpus: number): object | undefined {
  const gbps = v.stats[`${kind}.gbps`];
  if (!gbps) return undefined;
  const cpuKey: MetricKey = `${kind}.cpuPerGbit`;
  const total = repMedian(v.reps, (r) => (r[cpuKey] !== undefined && r[`${kind}.gbps`] !== undefined ? ((r[cpuKey]! * r[`${kind}.gbps`]!) / cpus) * 100 : undefined));
  const side = {
    cpu: { total: round(total, 2), user: null, nice: null, system: null, iowait: null, steal: null },
    ram: round(jsonNumber(v.stats['mem.hostUsedMiB']?.median), 0),
  };
  return { bandwidth: round(gbps.median * 1000, 2), client: side, server: side };
}

function knbDocument(r: CompareResult, v: VariantResult, name: string): object {
  const tests = Object.fromEntries(
    (['tcp1', 'udp'] as const).flatMap((k) => {
      const test = knbTest(v, k, r.host.cpus);
      return test ? [[k === 'tcp1' ? 'tcp' : 'udp', test]] : [];
    }),
  );
  return {
    metadata: {
      name: `${name}-${v.key}`,
      generator: 'weft bench compare',
      version: weftVersion(),
      date: knbDate(r.startedAt),
      'server-node': 'weft lab node 2 (network namespace)',
      'client-node': 'weft lab node 1 (network namespace)',
      'socket-buffer-size': 'auto',
      'shared-host': SHARED_HOST_NOTE,
      variant: v.key,
      label: v.label,
    },
    data: {
      cpu: r.host.cpuModel,
      kernel: r.host.kernel,
      'k8s-version': 'none (weft lab: no Kubernetes)',
      mtu: String(v.mtu),
      [v.kind === 'bare' ? 'node2node' : 'pod2pod']: tests,
    },
  };
}

function weftVariant(v: VariantResult): object {
  const figures: Record<string, object> = {};
  for (const key of Object.keys(METRICS) as MetricKey[]) {
    const s = v.stats[key];
    if (!s) continue;
    figures[key] = {
      unit: METRICS[key].unit,
      better: METRICS[key].better,
      median: jsonNumber(s.median),
      min: jsonNumber(s.min),
      max: jsonNumber(s.max),
      n: s.n,
      spread: jsonNumber(s.spread),
      noisy: s.noisy,
      ratioToBare: jsonNumber(v.ratioToBare[key]),
      ratioToEqual: jsonNumber(v.ratioToEqual[key]),
    };
  }
  return {
    label: v.label,
    kind: v.kind,
    equal: v.equal ?? null,
    mtu: v.mtu,
    udpDatagramBytes: v.udpDatagramBytes,
    reps: v.reps.length,
    figures,
  };
}

/** The comparison as one JSON document (see the file comment for its layout). */
export function toCompareJson(r: CompareResult): Record<string, unknown> {
  const name = `weft-bench-compare-${r.startedAt.replace(/[:.]/g, '-')}`;
  return {
    metadata: {
      name,
      generator: 'weft bench compare',
      version: weftVersion(),
      date: knbDate(r.startedAt),
      startedAt: r.startedAt,
      finishedAt: r.finishedAt,
      'shared-host': SHARED_HOST_NOTE,
      host: r.host,
      options: r.options,
      notes: r.notes,
    },
    variants: r.variants.map((v) => knbDocument(r, v, name)),
    weft: {
      spreadFlag: SPREAD_FLAG,
      cpuOrdering: r.cpuOrdering,
      variants: Object.fromEntries(r.variants.map((v) => [v.key, weftVariant(v)])),
    },
  };
}

// ---- the schema ----

type Schema = Record<string, unknown>;

const num = { type: 'number' };
const numOrNull = { type: ['number', 'null'] };
const str = { type: 'string' };
const VARIANT_KEYS = ['bare', 'host-gw', 'vxlan', 'udp', 'bgp', 'hand-routes', 'hand-vxlan'];
const BACKENDS = ['host-gw', 'vxlan', 'udp', 'bgp'];
const obj = (properties: Record<string, Schema>, required = Object.keys(properties), extra: boolean | Schema = false): Schema => ({
  type: 'object',
  properties,
  required,
  additionalProperties: extra,
});

/** JSON Schema (draft 2020-12) of toCompareJson's document. */
export const COMPARE_JSON_SCHEMA: Schema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'https://weft.invalid/schemas/bench-compare.schema.json',
  title: 'weft bench compare',
  description: `Every variant is a knb (k8s-bench-suite) document; weft.variants holds every figure with median, min, max and ratios. ${SHARED_HOST_NOTE}.`,
  ...obj(
    {
      $schema: { type: 'string', description: 'the schema file beside the document, for editors' },
      metadata: obj(
        {
          name: str,
          generator: { const: 'weft bench compare' },
          version: str,
          date: str,
          startedAt: str,
          finishedAt: str,
          'shared-host': str,
          host: obj({ cpus: { type: 'integer', minimum: 1 }, cpuModel: str, kernel: str, memTotalMiB: num }),
          options: obj({
            backends: { type: 'array', items: { enum: BACKENDS } },
            reps: { type: 'integer', minimum: 1 },
            seconds: num,
            warmupSeconds: num,
          }),
          notes: { type: 'array', items: str },
        },
        undefined,
        true,
      ),
      variants: { type: 'array', minItems: 1, items: { $ref: '#/$defs/knbDocument' } },
      weft: obj({
        spreadFlag: num,
        cpuOrdering: obj({
          metric: { enum: Object.keys(METRICS) },
          measured: { type: 'array', items: { enum: BACKENDS } },
          classic: { type: 'array', items: { enum: BACKENDS } },
          matchesClassic: { type: 'boolean' },
          summary: str,
        }),
        variants: { type: 'object', propertyNames: { enum: VARIANT_KEYS }, additionalProperties: { $ref: '#/$defs/weftVariant' } },
      }),
    },
    ['metadata', 'variants', 'weft'],
  ),
  $defs: {
    knbSide: obj({
      cpu: obj({ total: numOrNull, user: numOrNull, nice: numOrNull, system: numOrNull, iowait: numOrNull, steal: numOrNull }),
      ram: numOrNull,
    }),
    knbTest: obj({
      bandwidth: { type: ['number', 'null'], description: 'Mbit/s received' },
      client: { $ref: '#/$defs/knbSide' },
      server: { $ref: '#/$defs/knbSide' },
    }),
    knbTests: obj({ tcp: { $ref: '#/$defs/knbTest' }, udp: { $ref: '#/$defs/knbTest' } }, []),
    knbDocument: obj({
      metadata: obj(
        {
          name: str,
          generator: str,
          version: str,
          date: str,
          'server-node': str,
          'client-node': str,
          'socket-buffer-size': str,
          variant: { enum: VARIANT_KEYS },
        },
        undefined,
        true,
      ),
      data: obj(
        {
          cpu: str,
          kernel: str,
          'k8s-version': str,
          mtu: str,
          node2node: { $ref: '#/$defs/knbTests' },
          pod2pod: { $ref: '#/$defs/knbTests' },
        },
        ['cpu', 'kernel', 'k8s-version', 'mtu'],
      ),
    }),
    figure: obj({
      unit: str,
      better: { enum: ['higher', 'lower'] },
      median: numOrNull,
      min: numOrNull,
      max: numOrNull,
      n: { type: 'integer', minimum: 0 },
      spread: numOrNull,
      noisy: { type: 'boolean' },
      ratioToBare: numOrNull,
      ratioToEqual: numOrNull,
    }),
    weftVariant: obj({
      label: str,
      kind: { enum: ['bare', 'weft', 'hand'] },
      equal: { enum: [...VARIANT_KEYS, null] },
      mtu: { type: 'integer' },
      udpDatagramBytes: { type: 'integer' },
      reps: { type: 'integer', minimum: 0 },
      figures: { type: 'object', propertyNames: { enum: Object.keys(METRICS) }, additionalProperties: { $ref: '#/$defs/figure' } },
    }),
  },
};

// ---- the validator: the subset of JSON Schema the schema above uses ----

/** Keywords validateCompareJson understands; the others in the schema are annotations. */
export const VALIDATED_KEYWORDS = [
  'type', 'properties', 'required', 'additionalProperties', 'items', 'minItems', 'enum', 'const', 'minimum', 'propertyNames', '$ref',
] as const;

const typeOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v);
const fitsType = (v: unknown, t: string): boolean => typeOf(v) === t || (t === 'number' && typeOf(v) === 'integer');
const show = (v: unknown): string => JSON.stringify(v)?.slice(0, 40) ?? String(v);

function check(value: unknown, schema: Schema, path: string, root: Schema, problems: string[]): void {
  if (typeof schema.$ref === 'string') {
    const target = schema.$ref.replace(/^#\//, '').split('/').reduce<unknown>((s, k) => (s as Schema | undefined)?.[k], root) as Schema | undefined;
    if (!target) return void problems.push(`${path}: schema reference ${schema.$ref} not found`);
    check(value, target, path, root, problems);
  }
  if (schema.type !== undefined) {
    const types = ([] as string[]).concat(schema.type as string | string[]);
    if (!types.some((t) => fitsType(value, t))) return void problems.push(`${path}: expected ${types.join(' or ')}, found ${typeOf(value)}`);
  }
  if ('const' in schema && value !== schema.const) problems.push(`${path}: expected ${show(schema.const)}, found ${show(value)}`);
  if (Array.isArray(schema.enum) && !schema.enum.includes(value as never)) problems.push(`${path}: ${show(value)} is not one of ${schema.enum.map(show).join(', ')}`);
  if (typeof schema.minimum === 'number' && typeof value === 'number' && value < schema.minimum) problems.push(`${path}: ${value} is below ${schema.minimum}`);
  if (Array.isArray(value)) {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems) problems.push(`${path}: fewer than ${schema.minItems} items`);
    if (schema.items) value.forEach((item, i) => check(item, schema.items as Schema, `${path}[${i}]`, root, problems));
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const key of (schema.required ?? []) as string[]) if (!(key in o)) problems.push(`${path}: missing ${key}`);
    for (const [key, v] of Object.entries(o)) {
      const at = `${path}.${key}`;
      if (schema.propertyNames) check(key, schema.propertyNames as Schema, `${at} (name)`, root, problems);
      if (props[key]) check(v, props[key]!, at, root, problems);
      else if (schema.additionalProperties === false) problems.push(`${path}: unexpected property ${key}`);
      else if (schema.additionalProperties && typeof schema.additionalProperties === 'object') check(v, schema.additionalProperties as Schema, at, root, problems);
    }
  }
}

/** Problems with `doc` as a comparison document, one line each; empty when it fits COMPARE_JSON_SCHEMA. */
export function validateCompareJson(doc: unknown): string[] {
  const problems: string[] = [];
  check(doc, COMPARE_JSON_SCHEMA, '$', COMPARE_JSON_SCHEMA, problems);
  return problems;
}
