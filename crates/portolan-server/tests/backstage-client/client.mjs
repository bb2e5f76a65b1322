// Backstage's own catalog client against Portolan's /api/catalog. Each call is checked for the
// shape the client expects; any failure exits non-zero with the reason.
import assert from 'node:assert/strict';
import { CatalogClient } from '@backstage/catalog-client';
import { evaluateFilterPredicate } from '@backstage/filter-predicates';

const base = process.env.PORTOLAN_BASE;
const admin = { token: process.env.PORTOLAN_TOKEN };
const member = { token: process.env.PORTOLAN_MEMBER_TOKEN };
const catalog = new CatalogClient({ discoveryApi: { getBaseUrl: async () => `${base}/api/catalog` } });
const names = (items) => items.map((e) => e.metadata.name).sort();
const has = (entity, type, targetRef) => entity.relations.some((r) => r.type === type && r.targetRef === targetRef);

const cart = await catalog.getEntityByRef('component:default/cart', admin);
assert.equal(cart.kind, 'Component');
assert.equal(cart.metadata.title, 'Cart');
assert.equal(cart.spec.owner, 'team-a');
assert.ok(cart.metadata.uid, 'every entity has a uid');
assert.ok(has(cart, 'ownedBy', 'group:default/team-a'), 'owner relation');
assert.ok(has(cart, 'providesApi', 'api:default/cart-api'), 'providesApi relation');
assert.ok(has(cart, 'dependsOn', 'component:default/pay'), 'dependsOn relation');

const api = await catalog.getEntityByName({ kind: 'API', namespace: 'default', name: 'cart-api' }, admin);
assert.ok(has(api, 'apiProvidedBy', 'component:default/cart'), 'relations come back both ways');
const team = await catalog.getEntityByRef('group:default/team-a', admin);
assert.ok(has(team, 'ownerOf', 'component:default/cart'));
assert.ok(has(team, 'childOf', 'group:default/dept'));
assert.ok(has(team, 'hasMember', 'user:default/ana'));

const pay = await catalog.getEntityByRef('component:default/pay', admin);
assert.deepEqual(pay.spec.dependsOn, ['component:default/ghost'], 'an unresolved reference is kept');
assert.ok(!pay.relations.some((r) => r.type === 'dependsOn'), 'and is no relation until its target exists');
assert.equal(await catalog.getEntityByRef('component:default/ghost', admin), undefined, 'missing: undefined');

const components = await catalog.getEntities({ filter: { kind: 'component' } }, admin);
assert.deepEqual(names(components.items), ['cart', 'legacy', 'pay']);
const either = await catalog.getEntities({ filter: [{ kind: 'component', 'spec.type': 'SERVICE' }, { kind: 'api' }] }, admin);
assert.deepEqual(names(either.items), ['cart', 'cart-api', 'pay'], 'filter sets are ORed, case-insensitive');
const owned = await catalog.getEntities({ filter: { 'relations.ownedBy': 'group:default/team-a' }, fields: ['metadata.name'] }, admin);
assert.deepEqual(owned.items.map((e) => Object.keys(e)), [['metadata'], ['metadata']], 'only the fields asked for');
assert.deepEqual(names(owned.items), ['cart', 'cart-api']);

const first = await catalog.queryEntities(
  { filter: { kind: 'component' }, limit: 2, orderFields: { field: 'metadata.name', order: 'desc' } }, admin);
assert.deepEqual(first.items.map((e) => e.metadata.name), ['pay', 'legacy']);
assert.equal(first.totalItems, 3);
assert.ok(first.pageInfo.nextCursor, 'a next page');
const second = await catalog.queryEntities({ cursor: first.pageInfo.nextCursor, limit: 2 }, admin);
assert.deepEqual(second.items.map((e) => e.metadata.name), ['cart']);
assert.ok(second.pageInfo.prevCursor && !second.pageInfo.nextCursor);
const text = await catalog.queryEntities({ fullTextFilter: { term: 'PA', fields: ['metadata.name'] } }, admin);
assert.deepEqual(names(text.items), ['pay']);

const refs = await catalog.getEntitiesByRefs({ entityRefs: ['component:default/cart', 'component:default/nope'], fields: ['kind'] }, admin);
assert.deepEqual(refs.items, [{ kind: 'Component' }, undefined]);

const facets = await catalog.getEntityFacets({ facets: ['kind', 'spec.type'], filter: { kind: ['component', 'api'] } }, admin);
assert.deepEqual(facets.facets.kind, [{ value: 'Component', count: 3 }, { value: 'API', count: 1 }]);
assert.deepEqual(facets.facets['spec.type'], [{ value: 'service', count: 2 }, { value: 'library', count: 1 }, { value: 'openapi', count: 1 }]);

await catalog.refreshEntity('component:default/cart', admin);
const valid = await catalog.validateEntity(
  { apiVersion: 'backstage.io/v1alpha1', kind: 'Component', metadata: { name: 'x' }, spec: { owner: 'team-a' } }, 'url:https://example.com/x.yaml', admin);
assert.deepEqual(valid, { valid: true });
const invalid = await catalog.validateEntity(
  { apiVersion: 'backstage.io/v1alpha1', kind: 'Component', metadata: { name: 'x' }, spec: { dependsOn: ['nokind'] } }, 'url:https://example.com/x.yaml', admin);
assert.equal(invalid.valid, false);
assert.match(invalid.errors[0].message, /dependsOn/);

// Predicate queries (the POST forms) select what Backstage's own evaluator selects, page by
// page: the next cursor sends the client back to the POST form.
const everything = (await catalog.getEntities({}, admin)).items;
const predicates = [
  { kind: 'component', 'spec.type': 'SERVICE' },
  { $all: [{ kind: 'Component' }, { $not: { 'spec.owner': 'team-b' } }] },
  { $any: [{ kind: 'api' }, { 'metadata.title': { $exists: true } }] },
  { 'spec.type': { $in: ['library', 'openapi'] } },
  { 'metadata.name': { $hasPrefix: 'CA' } },
  { 'spec.memberOf': { $contains: 'team-a' } },
  { 'spec.lifecycle': { $exists: false }, kind: 'component' },
];
for (const query of predicates) {
  const expected = names(everything.filter((e) => evaluateFilterPredicate(query, e)));
  const pages = [];
  let page = await catalog.queryEntities({ query, limit: 1 }, admin);
  assert.equal(page.totalItems, expected.length, JSON.stringify(query));
  pages.push(...page.items);
  while (page.pageInfo.nextCursor) {
    page = await catalog.queryEntities({ cursor: page.pageInfo.nextCursor, limit: 1 }, admin);
    pages.push(...page.items);
  }
  assert.deepEqual(names(pages), expected, JSON.stringify(query));
}
const byOwner = await catalog.queryEntities({ query: { 'relations.ownedBy': 'group:default/team-a' }, fields: ['metadata.name'] }, admin);
assert.deepEqual(names(byOwner.items), ['cart', 'cart-api'], 'relations in a predicate');
const predicateFacets = await catalog.getEntityFacets({ facets: ['spec.type'], query: { kind: { $in: ['component', 'api'] } } }, admin);
assert.deepEqual(predicateFacets.facets['spec.type'], facets.facets['spec.type']);
const refsByPredicate = await catalog.getEntitiesByRefs(
  { entityRefs: ['component:default/cart', 'api:default/cart-api'], query: { kind: 'api' }, fields: ['kind'] }, admin);
assert.deepEqual(refsByPredicate.items, [undefined, { kind: 'API' }]);
await assert.rejects(catalog.queryEntities({ query: { kind: { $regex: '.*' } } }, admin),
  (e) => e.statusCode === 400 && /unknown operator \$regex/.test(e.body.error.message));

// A member reads only what their grants show: components their team owns.
const seen = await catalog.getEntities({ filter: { kind: 'component' } }, member);
assert.deepEqual(names(seen.items), ['cart']);
assert.equal(await catalog.getEntityByRef('component:default/pay', member), undefined);
const memberFacets = await catalog.getEntityFacets({ facets: ['kind'], filter: { kind: 'component' } }, member);
assert.deepEqual(memberFacets.facets.kind, [{ value: 'Component', count: 1 }]);

await catalog.removeEntityByUid((await catalog.getEntityByRef('component:default/legacy', admin)).metadata.uid, admin);
assert.equal(await catalog.getEntityByRef('component:default/legacy', admin), undefined);

// Locations: a folder on the server analyzed, tried, then registered as a `file` location.
const spec = { type: 'file', target: process.env.PORTOLAN_LOCATION_DIR };
const analyzed = await catalog.analyzeLocation({ location: spec }, admin);
assert.deepEqual(analyzed.existingEntityFiles.map((f) => [f.entity.metadata.name, f.isRegistered, f.location.target]),
  [['from-file', false, spec.target]]);
assert.deepEqual(analyzed.generateEntities, []);
const dry = await catalog.addLocation({ ...spec, dryRun: true }, admin);
assert.deepEqual([dry.exists, dry.entities.map((e) => e.metadata.name)], [false, ['from-file']]);
assert.equal(await catalog.getEntityByRef('component:default/from-file', admin), undefined, 'a dry run writes nothing');
assert.ok(!(await catalog.getLocations({}, admin)).items.some((l) => l.target === spec.target), 'nor registers');
const empty = await catalog.analyzeLocation({ location: { type: 'file', target: process.env.PORTOLAN_EMPTY_DIR } }, admin);
assert.equal(empty.existingEntityFiles.length, 0);
assert.equal(empty.generateEntities[0].entity.kind, 'Component');
assert.equal(empty.generateEntities[0].fields[0].state, 'needsUserInput');
await assert.rejects(catalog.analyzeLocation({ location: spec }, member), (e) => e.statusCode === 403);
const added = await catalog.addLocation({ type: 'file', target: process.env.PORTOLAN_LOCATION_DIR }, admin);
assert.equal(added.location.type, 'file');
assert.deepEqual(added.entities.map((e) => e.metadata.name), ['from-file']);
const listed = await catalog.getLocations({}, admin);
assert.ok(listed.items.some((l) => l.id === added.location.id));
assert.deepEqual(await catalog.getLocationById(added.location.id, admin), added.location);
assert.deepEqual(await catalog.getLocationByEntity('component:default/from-file', admin), added.location);
assert.equal((await catalog.analyzeLocation({ location: spec }, admin)).existingEntityFiles[0].isRegistered, true);
await catalog.removeLocationById(added.location.id, admin);
assert.equal(await catalog.getEntityByRef('component:default/from-file', admin), undefined, 'its entities go with it');

console.log('ok');
