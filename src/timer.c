/*
 * timer.c - per-connection timers (ovl_conn_timer): a binary min-heap of connections per worker, ordered by
 * deadline, so arming, moving and cancelling cost O(log n) and the backend's wait needs only the earliest one.
 *
 * A connection holds at most one timer; it lives in the heap while armed (conn->timer_slot is its index + 1) and
 * leaves it when it fires, when it is cancelled, and when the connection starts closing, so a timer never fires
 * for a closing connection and a freed one is never in the heap.
 */
#include "internal.h"

#include "alloc.h"

#include <errno.h>

#define MAX_WAIT_NS (3600ull * 1000000000ull)

static bool earlier(const ovl_conn *a, const ovl_conn *b)
{
    return a->timer_at_ns < b->timer_at_ns;
}

static void place(struct ovl__timer_heap *heap, uint32_t index, ovl_conn *conn)
{
    heap->items[index] = conn;
    conn->timer_slot = index + 1;
}

static void sift_up(struct ovl__timer_heap *heap, uint32_t index)
{
    ovl_conn *conn = heap->items[index];
    while (index > 0) {
        uint32_t parent = (index - 1) / 2;
        if (!earlier(conn, heap->items[parent]))
            break;
        place(heap, index, heap->items[parent]);
        index = parent;
    }
    place(heap, index, conn);
}

static void sift_down(struct ovl__timer_heap *heap, uint32_t index)
{
    ovl_conn *conn = heap->items[index];
    for (;;) {
        uint32_t child = 2 * index + 1;
        if (child >= heap->count)
            break;
        if (child + 1 < heap->count && earlier(heap->items[child + 1], heap->items[child]))
            child++;
        if (!earlier(heap->items[child], conn))
            break;
        place(heap, index, heap->items[child]);
        index = child;
    }
    place(heap, index, conn);
}

void ovl__timer_remove(ovl_conn *conn)
{
    if (!conn->timer_slot)
        return;
    struct ovl__timer_heap *heap = &conn->worker->timers;
    uint32_t index = conn->timer_slot - 1;
    conn->timer_slot = 0;
    ovl_conn *last = heap->items[--heap->count];
    if (index == heap->count)
        return;
    place(heap, index, last);
    sift_down(heap, index);
    sift_up(heap, last->timer_slot - 1);
}

int ovl_conn_timer(ovl_conn *conn, uint64_t delay_us, void (*on_timer)(ovl_conn *conn))
{
    if (!conn)
        return -EINVAL;
    if (!on_timer) {
        ovl__timer_remove(conn);
        return 0;
    }
    if (conn->flags & OVL__C_CLOSING)
        return -ENOTCONN;
    if (delay_us > UINT64_MAX / 2000)
        return -EINVAL;
    struct ovl__timer_heap *heap = &conn->worker->timers;
    conn->on_timer = on_timer;
    conn->timer_at_ns = ovl__clock_ns() + delay_us * 1000;
    if (conn->timer_slot) {
        uint32_t index = conn->timer_slot - 1;
        sift_down(heap, index);
        sift_up(heap, conn->timer_slot - 1);
        return 0;
    }
    if (heap->count == heap->capacity) {
        uint32_t capacity = heap->capacity ? heap->capacity * 2 : 64;
        ovl_conn **items = ovl__realloc(heap->items, (size_t)capacity * sizeof *items);
        if (!items)
            return -ENOMEM;
        heap->items = items;
        heap->capacity = capacity;
    }
    heap->count++;
    place(heap, heap->count - 1, conn);
    sift_up(heap, heap->count - 1);
    return 0;
}

int64_t ovl__timers_wait_ns(const struct ovl__worker *worker)
{
    if (!worker->timers.count)
        return -1;
    uint64_t at = worker->timers.items[0]->timer_at_ns, now = ovl__clock_ns();
    /* At most an hour: the backends add this to their clocks and round it, which a far deadline (ovl_conn_timer
     * accepts centuries) would overflow; waking once an hour to look again costs nothing. */
    uint64_t wait = at <= now ? 0 : at - now;
    return wait > MAX_WAIT_NS ? (int64_t)MAX_WAIT_NS : (int64_t)wait;
}

void ovl__timers_run(struct ovl__worker *worker)
{
    struct ovl__timer_heap *heap = &worker->timers;
    if (!heap->count)
        return;
    uint64_t now = ovl__clock_ns();
    /* Timers re-armed by their own callback with a short delay wait for the next turn: bounded by the count at
     * entry, one busy timer cannot keep the loop here. */
    for (uint32_t budget = heap->count; budget > 0 && heap->count; budget--) {
        ovl_conn *conn = heap->items[0];
        if (conn->timer_at_ns > now)
            break;
        ovl__timer_remove(conn);
        conn->on_timer(conn);
    }
}

void ovl__timers_destroy(struct ovl__worker *worker)
{
    ovl__free(worker->timers.items);
    worker->timers.items = NULL;
    worker->timers.count = worker->timers.capacity = 0;
}
