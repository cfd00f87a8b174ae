// LabelSelector checking and matching: every operator, the empty selector,
// and hostile input that must become a one-line reason, never a throw or a
// match through Object.prototype.
import t from 'tap';
import { matchesSelector, parseSelector, type Selector } from '../../src/policy/selector.js';

const sel = (input: unknown): Selector => {
  const r = parseSelector(input, 'spec.podSelector');
  if (!r.ok) throw new Error(r.reason);
  return r.selector;
};
const reason = (input: unknown): string => {
  const r = parseSelector(input, 'spec.podSelector');
  return r.ok ? '(accepted)' : r.reason;
};
/** Which of the label sets a selector matches, by index. */
const matching = (input: unknown, labelSets: Record<string, string>[]): number[] =>
  labelSets.flatMap((labels, i) => (matchesSelector(sel(input), labels) ? [i] : []));

const sets: Record<string, string>[] = [{}, { app: 'web' }, { app: 'db' }, { app: 'web', tier: 'front' }, { tier: 'back' }];

t.test('the empty selector selects everything', async (t) => {
  t.same(matching({}, sets), [0, 1, 2, 3, 4]);
});

t.test('matchLabels: every pair must be present with that value', async (t) => {
  t.same(matching({ matchLabels: { app: 'web', tier: 'front' } }, sets), [3]);
});

t.test('In: the key is present with one of the values', async (t) => {
  t.same(matching({ matchExpressions: [{ key: 'app', operator: 'In', values: ['web', 'db'] }] }, sets), [1, 2, 3]);
});

t.test('NotIn: the key is absent or has none of the values', async (t) => {
  t.same(matching({ matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['web'] }] }, sets), [0, 2, 4]);
});

t.test('Exists and DoesNotExist look at the key only', async (t) => {
  t.same({
    exists: matching({ matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, sets),
    absent: matching({ matchExpressions: [{ key: 'tier', operator: 'DoesNotExist', values: [] }] }, sets),
  }, { exists: [3, 4], absent: [0, 1, 2] });
});

t.test('matchLabels and matchExpressions together: all requirements hold (AND)', async (t) => {
  t.same(matching({ matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] }, sets), [1]);
});

t.test('keys named like Object.prototype members match only real labels', async (t) => {
  t.same({
    exists: matching({ matchExpressions: [{ key: 'constructor', operator: 'Exists' }] }, [{}, { constructor: 'x' }]),
    absent: matching({ matchExpressions: [{ key: 'toString', operator: 'DoesNotExist' }] }, [{}, { toString: 'x' }]),
  }, { exists: [1], absent: [0] });
});

t.test('a prefixed key and the empty value are valid', async (t) => {
  t.same(matching({ matchLabels: { 'kubernetes.io/metadata.name': 'x', empty: '' } }, [{ 'kubernetes.io/metadata.name': 'x', empty: '' }, { 'kubernetes.io/metadata.name': 'x' }]), [0]);
});

t.test('hostile or invalid selectors become one-line reasons naming the field', async (t) => {
  const proto = JSON.parse('{"matchLabels": {"__proto__": "x"}}');
  const reasons = {
    notObject: reason('app=web'),
    nullSelector: reason(null),
    labelsList: reason({ matchLabels: ['app'] }),
    numberValue: reason({ matchLabels: { app: 5 } }),
    badKey: reason({ matchLabels: { 'has space': 'x' } }),
    protoKey: reason(proto),
    longValue: reason({ matchLabels: { app: 'v'.repeat(64) } }),
    badPrefix: reason({ matchLabels: { 'Bad_Prefix/app': 'x' } }),
    exprsNotList: reason({ matchExpressions: { key: 'app' } }),
    exprNotObject: reason({ matchExpressions: ['app'] }),
    badOperator: reason({ matchExpressions: [{ key: 'app', operator: 'Equals', values: ['x'] }] }),
    lowerOperator: reason({ matchExpressions: [{ key: 'app', operator: 'in', values: ['x'] }] }),
    inNoValues: reason({ matchExpressions: [{ key: 'app', operator: 'In', values: [] }] }),
    notInNoValues: reason({ matchExpressions: [{ key: 'app', operator: 'NotIn' }] }),
    existsValues: reason({ matchExpressions: [{ key: 'app', operator: 'Exists', values: ['x'] }] }),
    valuesNotList: reason({ matchExpressions: [{ key: 'app', operator: 'In', values: 'x' }] }),
    badValue: reason({ matchExpressions: [{ key: 'app', operator: 'In', values: ['a\nb'] }] }),
    missingKey: reason({ matchExpressions: [{ operator: 'Exists' }] }),
  };
  t.same(reasons, {
    notObject: 'spec.podSelector: "app=web" is not a label selector object; give {} to select everything',
    nullSelector: 'spec.podSelector: null is not a label selector object; give {} to select everything',
    labelsList: 'spec.podSelector.matchLabels: ["app"] is not a map of label keys to values',
    numberValue: 'spec.podSelector.matchLabels: label value 5 is not a string; fix the label',
    badKey: 'spec.podSelector.matchLabels: label key "has space" is not 1-63 letters, digits, \'-\', \'_\' or \'.\' starting and ending with a letter or digit; fix the label',
    protoKey: 'spec.podSelector.matchLabels: label key "__proto__" is not 1-63 letters, digits, \'-\', \'_\' or \'.\' starting and ending with a letter or digit; fix the label',
    longValue: `spec.podSelector.matchLabels: label value "${'v'.repeat(60)}... is not empty or 1-63 letters, digits, '-', '_' or '.' starting and ending with a letter or digit; fix the label`,
    badPrefix: 'spec.podSelector.matchLabels: label key "Bad_Prefix/app" has a prefix that is not a DNS subdomain; fix the label',
    exprsNotList: 'spec.podSelector.matchExpressions: {"key":"app"} is not a list',
    exprNotObject: 'spec.podSelector.matchExpressions[0]: "app" is not an object with key, operator and values',
    badOperator: 'spec.podSelector.matchExpressions[0].operator: "Equals" is not In, NotIn, Exists or DoesNotExist; use one of those',
    lowerOperator: 'spec.podSelector.matchExpressions[0].operator: "in" is not In, NotIn, Exists or DoesNotExist; use one of those',
    inNoValues: 'spec.podSelector.matchExpressions[0].values: In needs at least one value; add values or use Exists',
    notInNoValues: 'spec.podSelector.matchExpressions[0].values: NotIn needs at least one value; add values or use DoesNotExist',
    existsValues: 'spec.podSelector.matchExpressions[0].values: Exists takes no values; remove them or use In',
    valuesNotList: 'spec.podSelector.matchExpressions[0].values: "x" is not a list of label values',
    badValue: 'spec.podSelector.matchExpressions[0].values: label value "a\\nb" is not empty or 1-63 letters, digits, \'-\', \'_\' or \'.\' starting and ending with a letter or digit; fix the value',
    missingKey: 'spec.podSelector.matchExpressions[0].key: label key undefined is not a string; fix the key',
  });
});
