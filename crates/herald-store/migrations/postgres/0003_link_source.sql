-- How an identity got linked to its external id, and as of when: `import` (a users import or
-- /users/track with a page: the customer's own record, which a ref never moves) or `ref` (a
-- signed m.me / plugin ref, ordered by the webhook event's own time). Links made before this
-- version are taken as refs.
ALTER TABLE identities ADD COLUMN link_source TEXT CHECK (link_source IN ('import', 'ref'));
ALTER TABLE identities ADD COLUMN linked_at_ms BIGINT;
UPDATE identities SET link_source = 'ref', linked_at_ms = first_seen_at_ms
 WHERE external_id IS NOT NULL;
