/*
 * check.c - dkv_check: the whole-file checker behind `dkv check` and
 * `dkv stat` (engine/README.md, "Checking a database").
 *
 * With every write held back (the writer lock exclusive) and every dirty
 * page written (a checkpoint), the data file is the database, and it is
 * read from the disk, not through the pool, in one sequential pass:
 *
 *   1. every page in [0, page_count) passes page_verify (checksum, its own
 *      number, reserved bytes); an all-zero page there is damage too, since
 *      after the checkpoint every page in use has been written;
 *   2. every B+tree node passes node_check (slots, cells, key order);
 *   3. every reference between pages - the header's root, purge list and
 *      free list heads, an inner node's children, a leaf's overflow
 *      values, an overflow page's next page and purge chain, a free page's
 *      next - is recorded against its target: a target beyond page_count,
 *      of the wrong type, or referenced twice is damage;
 *   4. after the pass every page but the header must have exactly one
 *      referrer and lead back to the header through its referrers (no
 *      cycle, no leaked page), and the free list must hold the header's
 *      free count.
 * Then btree_check walks the tree through the pool for what one page
 * cannot show: levels, separators bounding their subtrees, the leaf chain.
 *
 * Entry points: dkv_check, dkv_last_corruption.
 */
#include "dkv.h"

#include "db_int.h"
#include "node.h"
#include "pager/io.h"
#include "pager/page_format.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_CHUNK_BYTES (1u << 20)    /* read at a time                    */
#define CHECK_NONE        UINT32_MAX    /* from[]: no referrer yet           */

enum edge {                             /* why a page is referenced          */
    EDGE_NONE = 0,
    EDGE_TREE,                          /* the root, or an inner node's child */
    EDGE_VALUE,                         /* an overflow value's page          */
    EDGE_PURGE,                         /* a chain on the purge list         */
    EDGE_FREE                           /* the free list                     */
};

struct checker {
    dkv_check_info *info;
    uint32_t        ps;
    uint64_t        count;              /* page_count of the header          */
    uint32_t       *from;               /* referrer of each page             */
    unsigned char  *edge;               /* enum edge of that reference       */
    unsigned char  *type;               /* each page's type (low byte)       */
    unsigned char  *reach;              /* 0 unknown, 1 visiting, 2 yes, 3 no */
    uint64_t        leaf_used, inner_used;
};

/* Records damage at page_no: the first report wins. */
static int damage(struct checker *c, uint64_t page_no, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int damage(struct checker *c, uint64_t page_no, const char *fmt, ...)
{
    va_list ap;

    if (c->info->problem[0] == '\0') {
        c->info->bad_page = page_no;
        va_start(ap, fmt);
        vsnprintf(c->info->problem, sizeof(c->info->problem), fmt, ap);
        va_end(ap);
    }
    return PAGER_CORRUPT(page_no, "dkv_check found damage (see its report)");
}

static const char *edge_name(int e)
{
    switch (e) {
    case EDGE_TREE:  return "a B+tree node";
    case EDGE_VALUE: return "an overflow value page";
    case EDGE_PURGE: return "an overflow page on the purge list";
    case EDGE_FREE:  return "a free-list page";
    default:         return "nothing";
    }
}

static const char *type_name(int t)
{
    switch (t) {
    case PAGE_TYPE_FREE:        return "empty";
    case PAGE_TYPE_FILE_HEADER: return "file header";
    case PAGE_TYPE_FREE_LIST:   return "free-list";
    case PAGE_TYPE_BTREE_LEAF:  return "leaf";
    case PAGE_TYPE_BTREE_INNER: return "inner node";
    case PAGE_TYPE_OVERFLOW:    return "overflow";
    default:                    return "unknown";
    }
}

/* Page `by` references page `to` as edge e. */
static int refer(struct checker *c, uint32_t by, uint64_t to, int e)
{
    if (to == 0 || to >= c->count)
        return damage(c, by, "page %" PRIu32 " points to page %" PRIu64
                      " (as %s), outside the pages in use [1, %" PRIu64 ")",
                      by, to, edge_name(e), c->count);
    if (c->from[to] != CHECK_NONE)
        return damage(c, to, "page %" PRIu64 " is referenced twice: by page %"
                      PRIu32 " (as %s) and by page %" PRIu32 " (as %s)", to,
                      c->from[to], edge_name(c->edge[to]), by, edge_name(e));
    c->from[to] = by;
    c->edge[to] = (unsigned char)e;
    return DKV_OK;
}

static int check_header_page(struct checker *c, const unsigned char *p,
                             const struct space_header *h)
{
    int rc = DKV_OK;

    if (page_type(p) != PAGE_TYPE_FILE_HEADER)
        return damage(c, 0, "page 0 is a %s page, not the file header",
                      type_name(page_type(p)));
    if (h->meta[BTREE_META_ROOT] == 0)
        return damage(c, 0, "the file header names no B+tree root");
    rc = refer(c, 0, h->meta[BTREE_META_ROOT], EDGE_TREE);
    if (rc == DKV_OK && h->meta[BTREE_META_PURGE] != 0)
        rc = refer(c, 0, h->meta[BTREE_META_PURGE], EDGE_PURGE);
    if (rc == DKV_OK && h->free_head != 0)
        rc = refer(c, 0, h->free_head, EDGE_FREE);
    return rc;
}

static int check_node_page(struct checker *c, uint32_t no, const unsigned char *p)
{
    unsigned n = node_count(p), i;
    int rc = node_check(p, c->ps, no);

    if (rc != DKV_OK) {
        struct pager_corruption pc = pager_last_corruption();
        return damage(c, no, "page %" PRIu32 " (%s): %s", no,
                      type_name(page_type(p)), pc.what ? pc.what : "bad node");
    }
    if (page_type(p) == PAGE_TYPE_BTREE_INNER) {
        c->inner_used += c->ps - node_free(p, c->ps);
        c->info->inner_pages++;
        rc = refer(c, no, node_leftmost(p), EDGE_TREE);
        for (i = 0; rc == DKV_OK && i < n; i++)
            rc = refer(c, no, node_child(p, i), EDGE_TREE);
        return rc;
    }
    c->leaf_used += c->ps - node_free(p, c->ps);
    c->info->leaf_pages++;
    for (i = 0; rc == DKV_OK && i < n; i++) {
        size_t vlen;
        unsigned flags;
        const unsigned char *v = node_value(p, i, &vlen, &flags);
        if (flags & NODE_VAL_OVERFLOW)
            rc = refer(c, no, load_le32(v), EDGE_VALUE);
    }
    return rc;
}

static int check_overflow_page(struct checker *c, uint32_t no, const unsigned char *p)
{
    uint32_t len = load_le32(p + OVF_OFF_LEN);
    uint32_t next = load_le32(p + OVF_OFF_NEXT);
    uint32_t chain = load_le32(p + OVF_OFF_CHAIN);
    int rc = DKV_OK;

    c->info->overflow_pages++;
    if (len == 0 || len > c->ps - OVF_OFF_DATA)
        return damage(c, no, "overflow page %" PRIu32 " says it holds %" PRIu32
                      " bytes (at most %u fit)", no, len,
                      (unsigned)(c->ps - OVF_OFF_DATA));
    /* The next page belongs to the same value, whatever the chain is. */
    if (next != 0)
        rc = refer(c, no, next, EDGE_VALUE);
    if (rc == DKV_OK && chain != 0)
        rc = refer(c, no, chain, EDGE_PURGE);
    return rc;
}

/* Step 1-3 for one page read from the disk. */
static int check_page(struct checker *c, uint32_t no, const unsigned char *p,
                      const struct space_header *h)
{
    int rc = page_verify(p, c->ps, no);
    uint32_t next;

    if (rc == DKV_NOTFOUND)
        return damage(c, no, "page %" PRIu32 " is all zeros (never written) but "
                      "lies inside the pages in use [0, %" PRIu64 ")", no, c->count);
    if (rc != DKV_OK) {
        struct pager_corruption pc = pager_last_corruption();
        return damage(c, no, "page %" PRIu32 ": %s", no,
                      pc.what ? pc.what : "failed its checks");
    }
    c->type[no] = (unsigned char)page_type(p);
    if (no == 0)
        return check_header_page(c, p, h);
    switch (page_type(p)) {
    case PAGE_TYPE_FILE_HEADER:
        return damage(c, no, "page %" PRIu32 " is a second file header", no);
    case PAGE_TYPE_BTREE_LEAF:
    case PAGE_TYPE_BTREE_INNER:
        return check_node_page(c, no, p);
    case PAGE_TYPE_OVERFLOW:
        return check_overflow_page(c, no, p);
    case PAGE_TYPE_FREE_LIST:
        c->info->free_pages++;
        next = load_le32(p + FREE_OFF_NEXT);
        return next == 0 ? DKV_OK : refer(c, no, next, EDGE_FREE);
    default:
        return damage(c, no, "page %" PRIu32 " has an unknown type %d", no,
                      page_type(p));
    }
}

/* The sequential pass over the file (steps 1-3). */
static int read_pass(struct checker *c, struct io_file *file,
                     const struct space_header *h)
{
    struct io_ctx_config cfg = { .engine = DKV_IO_PSYNC, .depth = 1 };
    size_t chunk_pages = CHECK_CHUNK_BYTES / c->ps;
    unsigned char *buf = io_buf_alloc(CHECK_CHUNK_BYTES, PAGE_SIZE_MIN);
    struct io_ctx *ctx = NULL;
    uint64_t no = 0;
    int rc = buf ? io_ctx_create(&cfg, &ctx) : DKV_ERR_NOMEM;

    while (rc == DKV_OK && no < c->count) {
        uint64_t n = c->count - no < chunk_pages ? c->count - no : chunk_pages;
        struct io_req req = { .op = IO_READ, .file = file, .buf = buf,
                              .len = n * c->ps, .off = no * c->ps };
        struct io_req *reqs[1] = { &req };
        uint64_t i;

        rc = io_run(ctx, reqs, 1);
        for (i = 0; rc == DKV_OK && i < n; i++)
            rc = check_page(c, (uint32_t)(no + i), buf + i * c->ps, h);
        no += n;
    }
    io_ctx_destroy(ctx);
    io_buf_free(buf, CHECK_CHUNK_BYTES);
    return rc;
}

/* Whether page p leads back to the header through its referrers (step 4):
   follows them up, remembering the answer for every page on the way, so
   the whole file costs one visit per page.  path: count entries. */
static int reachable(struct checker *c, uint32_t p, uint32_t *path)
{
    unsigned depth = 0;
    uint32_t q = p;
    int yes;

    while (q != 0 && c->reach[q] == 0 && c->from[q] != CHECK_NONE) {
        c->reach[q] = 1;
        path[depth++] = q;
        q = c->from[q];
    }
    yes = q == 0 || c->reach[q] == 2;   /* 1: a cycle; no referrer: leaked */
    while (depth > 0)
        c->reach[path[--depth]] = yes ? 2 : 3;
    return yes;
}

static int check_types_and_reach(struct checker *c)
{
    static const int want[] = { [EDGE_TREE] = PAGE_TYPE_BTREE_LEAF,
                                [EDGE_VALUE] = PAGE_TYPE_OVERFLOW,
                                [EDGE_PURGE] = PAGE_TYPE_OVERFLOW,
                                [EDGE_FREE] = PAGE_TYPE_FREE_LIST };
    uint32_t *path = malloc(c->count * sizeof(*path));
    uint64_t p;
    int rc = path ? DKV_OK : DKV_ERR_NOMEM;

    for (p = 1; rc == DKV_OK && p < c->count; p++) {
        int e = c->edge[p], t = c->type[p];
        if (c->from[p] == CHECK_NONE)
            rc = damage(c, p, "page %" PRIu64 " (%s) is not reachable: neither in "
                        "the tree, in a value, on the purge list nor on the free "
                        "list (a leaked page)", p, type_name(t));
        else if (t != want[e] && !(e == EDGE_TREE && t == PAGE_TYPE_BTREE_INNER))
            rc = damage(c, p, "page %" PRIu32 " points to page %" PRIu64 " as %s, "
                        "but that is a %s page", c->from[p], p, edge_name(e),
                        type_name(t));
        else if (!reachable(c, (uint32_t)p, path))
            rc = damage(c, p, "page %" PRIu64 " (%s) lies on a cycle of references "
                        "that does not lead back to the file header", p,
                        type_name(t));
    }
    free(path);
    return rc;
}

static int check_free_count(struct checker *c, const struct space_header *h)
{
    if (c->info->free_pages != h->free_count)
        return damage(c, 0, "the file header counts %" PRIu32 " free pages, "
                      "the free list holds %" PRIu64, h->free_count,
                      c->info->free_pages);
    return DKV_OK;
}

static int check_file(struct checker *c, struct store *s)
{
    struct space *sp = store_space(s);
    struct space_header h = *space_header(sp);
    int64_t size = io_file_size(space_file(sp));
    int rc;

    c->ps = space_page_size(sp);
    c->count = h.page_count;
    c->info->page_size = c->ps;
    c->info->page_count = h.page_count;
    c->info->file_pages = size > 0 ? (uint64_t)size / c->ps : 0;
    if (size < 0)
        return (int)size;
    if (c->info->file_pages < c->count)
        return damage(c, c->count - 1, "the data file holds %" PRIu64 " pages, "
                      "fewer than the %" PRIu64 " in use", c->info->file_pages,
                      c->count);
    c->from = malloc(c->count * sizeof(*c->from));
    c->edge = calloc(c->count, 1);
    c->type = calloc(c->count, 1);
    c->reach = calloc(c->count, 1);
    if (!c->from || !c->edge || !c->type || !c->reach)
        return DKV_ERR_NOMEM;
    memset(c->from, 0xff, c->count * sizeof(*c->from));
    rc = read_pass(c, space_file(sp), &h);
    if (rc == DKV_OK)
        rc = check_types_and_reach(c);
    if (rc == DKV_OK)
        rc = check_free_count(c, &h);
    return rc;
}

static int check_locked(dkv_db *db, dkv_check_info *info)
{
    struct checker c = { .info = info };
    int rc = store_checkpoint(db_store(db));   /* the disk is the database */

    if (rc == DKV_OK)
        rc = check_file(&c, db_store(db));
    if (rc == DKV_OK) {
        unsigned height = 0;
        rc = btree_check(db_btree(db), &info->keys, &height);
        info->height = height;
        if (rc == DKV_ERR_CORRUPT) {
            struct pager_corruption pc = pager_last_corruption();
            damage(&c, pc.page_no, "page %" PRIu64 ": %s", pc.page_no,
                   pc.what ? pc.what : "the B+tree check failed");
        }
    }
    if (info->leaf_pages > 0)
        info->leaf_fill = (double)c.leaf_used / ((double)info->leaf_pages * c.ps);
    if (info->inner_pages > 0)
        info->inner_fill = (double)c.inner_used / ((double)info->inner_pages * c.ps);
    free(c.from);
    free(c.edge);
    free(c.type);
    free(c.reach);
    return rc;
}

DKV_EXPORT int dkv_check(dkv_db *db, dkv_check_info *info)
{
    int rc;

    if (db == NULL || info == NULL)
        return DKV_ERR_INVALID;
    memset(info, 0, sizeof(*info));
    if (db_read_only(db))
        return DKV_ERR_READONLY;
    db_writers_stop(db);
    rc = check_locked(db, info);
    db_writers_resume(db);
    if (rc == DKV_ERR_CORRUPT && info->problem[0] == '\0') {
        struct pager_corruption pc = pager_last_corruption();
        info->bad_page = pc.page_no;
        snprintf(info->problem, sizeof(info->problem), "page %" PRIu64 ": %s",
                 pc.page_no, pc.what ? pc.what : "damaged");
    }
    return rc;
}

DKV_EXPORT int dkv_last_corruption(uint64_t *page_no, const char **what)
{
    struct pager_corruption pc = pager_last_corruption();

    if (pc.what == NULL)
        return DKV_NOTFOUND;
    if (page_no)
        *page_no = pc.page_no;
    if (what)
        *what = pc.what;
    return DKV_OK;
}
