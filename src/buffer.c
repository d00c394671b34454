/*
 * buffer.c - receive buffer pools and the buffers of the send path.
 *
 * A worker's pool is slabs cut into equal slots; left to grow, it doubles as its worker's connections call for it.
 * The kernel (or the epoll loop) fills a free slot; the slot then belongs to the application until it is released or
 * its send completes, and only then goes back to the pool. The state byte makes that hand-over checked: a slot handed
 * back twice would let the kernel fill it while someone still reads it - one connection's bytes showing up on
 * another - so a second release is refused loudly. Free slots wait on one stack per pool, the most recently freed on
 * top, which every backend takes from: the slots in use stay few and warm in cache.
 */
#include "backend.h"

#include <errno.h>
#include "alloc.h"
#include <stdlib.h>
#include <string.h>

/* Fairness thresholds (conn.c) for the pool's size now. Under pressure, a few buffers per connection keep a stream
 * moving (the kernel's socket buffers hold far more); a quarter of the pool stays for connections that hold none, so
 * a new request is always read. */
static void pool_thresholds(struct ovl__pool *pool)
{
    pool->share = pool->slot_count < 16 ? (pool->slot_count + 3) / 4 : 4;
    pool->pressure = pool->slot_count / 2;
    pool->reserve = pool->slot_count / 4;
}

/* One more chunk of `count` slots, numbered from slot_count on, at the bottom of the free stack: they are untouched
 * (nothing resident), and the warm slots on top stay the ones used first. */
static int pool_add_chunk(struct ovl__pool *pool, struct ovl__worker *worker, uint32_t count)
{
    if (pool->chunk_count == OVL__POOL_CHUNKS || count > pool->slot_limit - pool->slot_count)
        return -ENOSPC;
    char *slab = ovl__malloc_aligned((size_t)pool->slot_size * count, 4096);
    ovl_buf *headers = ovl__calloc(count, sizeof *headers);
    if (!slab || !headers) {
        ovl__free_aligned(slab);
        ovl__free(headers);
        return -ENOMEM;
    }
    pool->chunks[pool->chunk_count].slab = slab;
    pool->chunks[pool->chunk_count].headers = headers;
    pool->chunk_count++;
    uint32_t first = pool->slot_count;
    memmove(pool->free_slots + count, pool->free_slots, pool->free_count * sizeof *pool->free_slots);
    for (uint32_t i = 0; i < count; i++) {
        ovl_buf *slot = &headers[i];
        slot->worker = worker;
        slot->slot = first + i;
        slot->kind = OVL__BUF_POOL;
        slot->state = OVL__BUF_FREE;
        slot->released = true; /* never touched: nothing resident to give back */
        slot->home = slot->data = slab + (size_t)i * pool->slot_size;
        pool->slots[first + i] = slot;
        pool->free_slots[i] = first + count - 1 - i; /* the highest new slot deepest: order among them is moot */
    }
    pool->free_count += count;
    pool->untouched += count;
    pool->slot_count += count;
    pool_thresholds(pool);
    ovl__count(&worker->counters.recv_buffers, count);
    return 0;
}

int ovl__pool_init(struct ovl__pool *pool, struct ovl__worker *worker, uint32_t slot_size, uint32_t slot_count,
                   uint32_t slot_limit)
{
    memset(pool, 0, sizeof *pool);
    pool->slot_size = slot_size;
    pool->slot_limit = slot_limit > slot_count ? slot_limit : slot_count;
    pool->slots = ovl__calloc(pool->slot_limit, sizeof *pool->slots);
    pool->free_slots = ovl__calloc(pool->slot_limit, sizeof *pool->free_slots);
    int rc = pool->slots && pool->free_slots ? pool_add_chunk(pool, worker, slot_count) : -ENOMEM;
    if (rc < 0) {
        ovl__pool_destroy(pool);
        return -ENOMEM;
    }
    return 0;
}

void ovl__pool_fit(struct ovl__pool *pool, uint32_t conns)
{
    while (pool->slot_count < pool->slot_limit && (uint64_t)conns * OVL__POOL_PER_CONN > pool->slot_count) {
        struct ovl__worker *worker = pool->slots[0]->worker;
        uint32_t add = pool->slot_count <= pool->slot_limit - pool->slot_count ? pool->slot_count
                                                                                 : pool->slot_limit - pool->slot_count;
        int rc = pool_add_chunk(pool, worker, add);
        if (rc < 0) {
            ovl__log(worker->engine, OVL_LOG_WARNING, "receive pool: could not grow from %u to %u buffers of %u "
                     "bytes (%s); it stays at %u", pool->slot_count, pool->slot_count + add, pool->slot_size,
                     ovl_strerror(rc), pool->slot_count);
            pool->slot_limit = pool->slot_count; /* do not try again at every connection */
            return;
        }
        /* More free slots: connections paused for the pool may go on. */
        if (worker->pool_paused)
            worker->pool_walk_all = true;
    }
}

void ovl__pool_destroy(struct ovl__pool *pool)
{
    for (uint32_t i = 0; i < pool->chunk_count; i++) {
        ovl__free_aligned(pool->chunks[i].slab);
        ovl__free(pool->chunks[i].headers);
    }
    pool->chunk_count = 0;
    ovl__free(pool->slots);
    ovl__free(pool->free_slots);
    pool->slots = NULL;
    pool->free_slots = NULL;
}

ovl_buf *ovl__pool_take(struct ovl__pool *pool, uint32_t slot, size_t len)
{
    if (slot >= pool->slot_count || pool->slots[slot]->state != OVL__BUF_FREE) {
        /* The kernel reported a slot we do not consider free: never hand it out twice. */
        ovl__log(pool->slots[0]->worker->engine, OVL_LOG_ERROR, "buffer slot %u reported while not free; dropped",
                 slot);
        return NULL;
    }
    ovl_buf *buf = pool->slots[slot];
    buf->state = OVL__BUF_USER;
    buf->data = buf->home;
    buf->len = len;
    buf->next = NULL;
    buf->owner = NULL;
    buf->owned_prev = buf->owned_next = NULL;
    buf->queued = false;
    buf->released = false;
    pool->held++;
    return buf;
}

void ovl__buf_free(ovl_buf *buf)
{
    if (buf->kind != OVL__BUF_POOL) {
        ovl__free(buf);
        return;
    }
    if (buf->state != OVL__BUF_USER) {
        ovl__log(buf->worker->engine, OVL_LOG_ERROR, "buffer slot %u released twice; ignored", buf->slot);
        return;
    }
    struct ovl__worker *worker = buf->worker;
    if (buf->owner)
        ovl__conn_slot_freed(buf);
    buf->state = OVL__BUF_FREE;
    buf->data = buf->home;
    buf->len = 0;
    worker->pool.held--;
    worker->pool.free_slots[worker->pool.free_count++] = buf->slot;
    /* Back to a threshold (conn.c: the reserve counts free slots, the pressure also IOCP's parked ones): the
     * connections paused below it may go on. Free slots rise one at a time, so equality sees every crossing. */
    uint32_t free_now = worker->pool.slot_count - worker->pool.held;
    if (worker->pool_paused &&
        (free_now == worker->pool.reserve || free_now + worker->pool.parked == worker->pool.pressure))
        worker->pool_walk_all = true;
}

/* The whole pages inside one slot go back to the system, once until it is taken again (ovl__pool_take); the next
 * write faults in zeroed pages. */
void ovl__pool_release_slot(struct ovl__pool *pool, uint32_t slot)
{
    ovl_buf *buf = pool->slots[slot];
    if (buf->released)
        return;
    buf->released = true;
    uintptr_t start = (uintptr_t)buf->home;
    uintptr_t end = start + pool->slot_size;
    start = (start + OVL__PAGE - 1) & ~(uintptr_t)(OVL__PAGE - 1);
    end &= ~(uintptr_t)(OVL__PAGE - 1);
    if (end > start)
        ovl__memory_release((void *)start, end - start);
}

/*
 * After a burst (non-readers holding their share, a flood of large receives) most of the pool has been touched and
 * stays resident, though the load that follows uses a few slots at the top of the free stack. Slots deeper than any
 * pop reached for a whole second are cold: their pages go back to the system, each once until it is used again.
 */
void ovl__pool_trim(struct ovl__pool *pool, uint64_t now_ms)
{
    if (now_ms - pool->trimmed_at_ms < 1000)
        return;
    pool->trimmed_at_ms = now_ms;
    for (uint32_t i = 0; i < pool->untouched; i++)
        ovl__pool_release_slot(pool, pool->free_slots[i]); /* at once for a slot released already */
    pool->untouched = pool->free_count;
}

const void *ovl_buf_data(const ovl_buf *buf)
{
    return buf->data;
}

size_t ovl_buf_len(const ovl_buf *buf)
{
    return buf->len;
}

void ovl_buf_release(ovl_buf *buf)
{
    if (buf)
        ovl__buf_free(buf);
}
