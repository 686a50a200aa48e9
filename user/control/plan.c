/* plan.c: what a batch of records changes in the store, checked before
 * anything changes.  A VM is added when no loaded VM has its instance-id,
 * left alone when the record the store keeps beside its tree is the same
 * canonical text (apply, watch), updated otherwise; apply deletes every
 * loaded VM the batch does not name.  The checks replay what plan_execute
 * will do, in its order (deletes first, then each new tree allocated before
 * the old one is freed), so a plan that passes them fits. */
#include "control/control.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compile/compile.h"
#include "lib/macaddr.h"
#include "store/arena.h"

static const char *const plan_verbs[PLAN_ACTIONS] = { "add", "update", "unchanged", "delete" };

static int plan_push(struct plan *p, enum plan_action action, const char *instance_id, const struct vm_set *set,
		     const struct vm_desc *vm, const char *record)
{
	struct plan_step *st = realloc(p->steps, (p->n + 1) * sizeof(*st));

	if (!st)
		return -ENOMEM;
	p->steps = st;
	st = &p->steps[p->n++];
	*st = (struct plan_step){ .action = action, .set = set, .vm = vm, .record = record };
	snprintf(st->instance_id, sizeof(st->instance_id), "%s", instance_id);
	p->count[action]++;
	return 0;
}

/* Is the record the store keeps for this slot exactly `canonical`? */
static bool plan_same_record(const struct store *s, int slot, const char *canonical)
{
	const char *text;
	size_t len;

	return store_record(s, (uint32_t)slot, &text, &len) == 0 && len == strlen(canonical) &&
	       memcmp(text, canonical, len) == 0;
}

static int plan_records(struct plan *p, const struct store *s, const struct record_batch *b, enum plan_mode mode)
{
	for (size_t f = 0; f < b->n; f++)
		for (size_t i = 0; i < b->files[f].set.n; i++) {
			const struct vm_desc *vm = &b->files[f].set.vms[i];
			const char *rec = b->files[f].canonical[i];
			int slot = store_find(s, vm->instance_id);
			enum plan_action a = slot < 0			     ? PLAN_ADD
					     : mode == PLAN_LOAD		     ? PLAN_UPDATE
					     : plan_same_record(s, slot, rec) ? PLAN_UNCHANGED
									      : PLAN_UPDATE;

			if (plan_push(p, a, vm->instance_id, &b->files[f].set, vm, rec))
				return -ENOMEM;
		}
	return 0;
}

static bool plan_names(const struct plan *p, const char *instance_id)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->steps[i].instance_id, instance_id) == 0)
			return true;
	return false;
}

/* The VMs to delete: with apply every loaded VM the batch leaves out; else
 * those of `doomed` that are loaded and not in the batch. */
static int plan_deletes(struct plan *p, const struct store *s, enum plan_mode mode, const char *const *doomed,
			size_t n_doomed)
{
	for (int slot = 1; mode == PLAN_APPLY && slot < (int)s->max_slots; slot++) {
		const char *id = s->vms[slot].instance_id;

		if (store_vm_active(&s->vms[slot]) && !plan_names(p, id) && plan_push(p, PLAN_DELETE, id, NULL, NULL, NULL))
			return -ENOMEM;
	}
	for (size_t i = 0; i < n_doomed; i++) {
		if (store_find(s, doomed[i]) < 0 || plan_names(p, doomed[i]))
			continue;
		if (plan_push(p, PLAN_DELETE, doomed[i], NULL, NULL, NULL))
			return -ENOMEM;
	}
	return 0;
}

/* The same for each of the record's IPv6 addresses. */
static int plan_check_ipv6_conflicts(const struct plan *p, const struct store *s, const struct plan_step *st,
				     struct conf_error *err)
{
	char path[64], text[INET6_ADDRSTRLEN];

	for (unsigned a = 0; a < st->vm->n_ipv6; a++) {
		int at = store_find_ipv6(s, st->vm->ipv6[a]);
		const char *other = at >= 0 ? s->vms[at].instance_id : NULL;

		if (!other || plan_names(p, other))
			continue;
		snprintf(path, sizeof(path), "%s.ipv6[%u]", st->vm->json_path, a);
		inet_ntop(AF_INET6, st->vm->ipv6[a], text, sizeof(text));
		return vmconf_error_at(st->set, err, path, "%s is already used by loaded VM %s", text, other);
	}
	return 0;
}

/* A loaded VM that stays (not in the batch, not deleted) and holds the MAC,
 * IPv4 or an IPv6 address a record asks for. */
static int plan_check_conflicts(const struct plan *p, const struct store *s, struct conf_error *err)
{
	char path[64], text[32];

	for (size_t i = 0; i < p->n; i++) {
		const struct plan_step *st = &p->steps[i];
		int mac_at, ip_at;
		const char *other;

		if (st->action != PLAN_ADD && st->action != PLAN_UPDATE)
			continue;
		mac_at = store_find_mac(s, st->vm->mac);
		ip_at = store_find_ipv4(s, st->vm->ipv4);
		other = mac_at >= 0 ? s->vms[mac_at].instance_id : NULL;
		if (other && !plan_names(p, other)) {
			snprintf(path, sizeof(path), "%s.mac", st->vm->json_path);
			macaddr_format(st->vm->mac, text);
			return vmconf_error_at(st->set, err, path, "%s is already used by loaded VM %s", text, other);
		}
		other = ip_at >= 0 ? s->vms[ip_at].instance_id : NULL;
		if (other && !plan_names(p, other)) {
			snprintf(path, sizeof(path), "%s.ipv4", st->vm->json_path);
			inet_ntop(AF_INET, &st->vm->ipv4, text, sizeof(text));
			return vmconf_error_at(st->set, err, path, "%s is already used by loaded VM %s", text, other);
		}
		if (plan_check_ipv6_conflicts(p, s, st, err))
			return -EINVAL;
	}
	return 0;
}

static int plan_check_slots(const struct plan *p, const struct store *s, struct conf_error *err)
{
	int free_slots = store_free_slots(s) + p->count[PLAN_DELETE];

	if (p->count[PLAN_ADD] <= free_slots)
		return 0;
	snprintf(err->text, sizeof(err->text),
		 "VM table full: this change adds %d VMs, %d slots are free (at most %d VMs); "
		 "delete VMs first or recreate the store with a larger --max-vms",
		 p->count[PLAN_ADD], free_slots, (int)s->max_slots - 1);
	return -ENOSPC;
}

/* The arena block a step's tree will take: its tree (an upper bound for a
 * signed one, vm_compile_bound) and its record. */
static int plan_block_len(const struct plan_step *st, const struct identity_key *key, size_t *len,
			  struct conf_error *err)
{
	struct tree_meta meta = { .http_tokens = st->vm->http_tokens, .hop_limit = st->vm->hop_limit };
	char why[sizeof(err->text) / 2] = "";
	size_t tree_len;
	int ret;

	snprintf(meta.instance_id, sizeof(meta.instance_id), "%s", st->vm->instance_id);
	ret = vm_compile_bound(st->vm, &meta, key, &tree_len, why, sizeof(why));
	if (ret) {
		snprintf(err->text, sizeof(err->text), "%.500s: %s", st->set->source, why);
		return ret;
	}
	*len = store_block_len(tree_len, strlen(st->record));
	return 0;
}

static int plan_no_room(const struct plan_step *st, size_t len, const struct arena_plan *ap, struct conf_error *err)
{
	uint32_t total = ap->hdr->npages, used = ap->hdr->used_pages;

	return vmconf_error_at(st->set, err, st->vm->json_path,
			       "arena full: %s needs %zu bytes (%u pages of %d), %zu bytes are free after the "
			       "changes before it; delete VMs or recreate the store with a larger --arena-size",
			       st->instance_id, len, arena_pages_for(len), IMDS_ARENA_PAGE,
			       (size_t)(total - ap->first - used) * IMDS_ARENA_PAGE);
}

static int plan_replay_room(const struct plan *p, const struct store *s, const struct identity_key *key,
			    size_t *short_len, struct conf_error *err)
{
	struct arena_plan plan, *ap = &plan;
	int ret = 0;

	if (arena_plan_init(&s->arena, ap))
		return -ENOMEM;
	for (size_t i = 0; i < p->n; i++)
		if (p->steps[i].action == PLAN_DELETE)
			arena_plan_free(ap, &s->arena, (uint32_t)s->vms[store_find(s, p->steps[i].instance_id)].tree_ref);
	for (size_t i = 0; i < p->n && !ret; i++) {
		const struct plan_step *st = &p->steps[i];
		size_t len = 0;
		int slot;

		if (st->action != PLAN_ADD && st->action != PLAN_UPDATE)
			continue;
		ret = plan_block_len(st, key, &len, err);
		if (!ret && (ret = arena_plan_alloc(ap, len)) == -ENOSPC) {
			plan_no_room(st, len, ap, err);
			*short_len = ap->hdr->npages - ap->first - ap->hdr->used_pages >= arena_pages_for(len) ? len : 0;
		}
		slot = store_find(s, st->instance_id);
		if (!ret && slot >= 0)
			arena_plan_free(ap, &s->arena, (uint32_t)s->vms[slot].tree_ref);
	}
	arena_plan_release(ap);
	return ret;
}

/* The plan's room, replayed on a copy of the bitmap; when a tree finds no
 * run although enough pages would be free, the arena is compacted for it
 * (other VMs' trees move, each atomically) and the replay starts again. */
static int plan_check_room(const struct plan *p, struct store *s, const struct identity_key *key,
			   struct conf_error *err)
{
	size_t short_len = 0;
	int ret = plan_replay_room(p, s, key, &short_len, err);

	for (int tries = 0; ret == -ENOSPC && short_len && tries < 8; tries++) {
		if (store_make_room(s, short_len))
			break;
		short_len = 0;
		ret = plan_replay_room(p, s, key, &short_len, err);
	}
	return ret;
}

int plan_make(struct plan *p, struct store *s, const struct record_batch *b, enum plan_mode mode,
	      const char *const *doomed, size_t n_doomed, const struct identity_key *key, struct conf_error *err)
{
	int ret;

	memset(p, 0, sizeof(*p));
	ret = plan_records(p, s, b, mode);
	if (!ret)
		ret = plan_deletes(p, s, mode, doomed, n_doomed);
	if (ret == -ENOMEM)
		snprintf(err->text, sizeof(err->text), "out of memory");
	if (!ret)
		ret = plan_check_conflicts(p, s, err);
	if (!ret)
		ret = plan_check_slots(p, s, err);
	if (!ret)
		ret = plan_check_room(p, s, key, err);
	if (ret)
		plan_free(p);
	return ret;
}

void plan_free(struct plan *p)
{
	free(p->steps);
	memset(p, 0, sizeof(*p));
}

void plan_summary(const struct plan *p, char *out, size_t outlen)
{
	snprintf(out, outlen, "%d added, %d updated, %d deleted, %d unchanged", p->count[PLAN_ADD],
		 p->count[PLAN_UPDATE], p->count[PLAN_DELETE], p->count[PLAN_UNCHANGED]);
}

void plan_print(const struct plan *p, FILE *f)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->steps[i].action != PLAN_UNCHANGED)
			fprintf(f, "%s %s\n", plan_verbs[p->steps[i].action], p->steps[i].instance_id);
}
