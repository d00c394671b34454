/*
 * buffer.c - receive buffer pools and the buffers of the send path.
 *
 * A worker's pool is one slab cut into equal slots. The kernel (or the epoll loop) fills a free slot; the slot then
 * belongs to the application until it is released or its send completes, and only then goes back to the pool. The
 * state byte makes that hand-over checked: a slot handed back twice would let the kernel fill it while someone
 * still reads it - one connection's bytes showing up on another - so a second release is refused loudly. Free
 * slots wait on one stack per pool, the most recently freed on top, which every backend takes from: the slots in use
 * stay few and warm in cache.
 */
#include "backend.h"

#include <errno.h>
#include "alloc.h"
#include <stdlib.h>

int ovl__pool_init(struct ovl__pool *pool, struct ovl__worker *worker, uint32_t slot_size, uint32_t slot_count)
{
    pool->slot_size = slot_size;
    pool->slot_count = slot_count;
    pool->held = 0;
    pool->slab = ovl__malloc_aligned((size_t)slot_size * slot_count, 4096);
    pool->slots = ovl__calloc(slot_count, sizeof *pool->slots);
    pool->free_slots = ovl__calloc(slot_count, sizeof *pool->free_slots);
    pool->free_count = 0;
    if (!pool->slab || !pool->slots || !pool->free_slots) {
        ovl__pool_destroy(pool);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < slot_count; i++) {
        ovl_buf *slot = &pool->slots[i];
        slot->worker = worker;
        slot->slot = i;
        slot->kind = OVL__BUF_POOL;
        slot->state = OVL__BUF_FREE;
        slot->released = true; /* never touched: nothing resident to give back */
        slot->data = pool->slab + (size_t)i * slot_size;
        pool->free_slots[i] = slot_count - 1 - i; /* slot 0 on top: used first */
    }
    pool->free_count = slot_count;
    pool->untouched = slot_count;
    /* Under pressure, a few buffers per connection keep a stream moving (the kernel's socket buffers hold far
     * more); a quarter of the pool stays for connections that hold none, so a new request is always read. */
    pool->share = slot_count < 16 ? (slot_count + 3) / 4 : 4;
    pool->pressure = slot_count / 2;
    pool->reserve = slot_count / 4;
    pool->parked = 0;
    return 0;
}

void ovl__pool_destroy(struct ovl__pool *pool)
{
    ovl__free_aligned(pool->slab);
    ovl__free(pool->slots);
    ovl__free(pool->free_slots);
    pool->slab = NULL;
    pool->slots = NULL;
    pool->free_slots = NULL;
}

ovl_buf *ovl__pool_take(struct ovl__pool *pool, uint32_t slot, size_t len)
{
    if (slot >= pool->slot_count || pool->slots[slot].state != OVL__BUF_FREE) {
        /* The kernel reported a slot we do not consider free: never hand it out twice. */
        ovl__log(pool->slots[0].worker->engine, OVL_LOG_ERROR, "buffer slot %u reported while not free; dropped",
                 slot);
        return NULL;
    }
    ovl_buf *buf = &pool->slots[slot];
    buf->state = OVL__BUF_USER;
    buf->data = pool->slab + (size_t)slot * pool->slot_size;
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
    buf->data = worker->pool.slab + (size_t)buf->slot * worker->pool.slot_size;
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
    if (pool->slots[slot].released)
        return;
    pool->slots[slot].released = true;
    uintptr_t start = (uintptr_t)pool->slab + (uintptr_t)slot * pool->slot_size;
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
