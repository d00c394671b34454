/*
 * timer.c - the worker's timers: one pairing heap per worker, ordered by deadline, holding every timer the worker
 * keeps - a connection's ovl_conn_timer, the idle tick, the drain deadline, a backend's accept retry.
 *
 * The heap is intrusive (each struct ovl__timer carries its own links), so arming never allocates and never fails:
 * inserting is O(1), taking the earliest or removing any timer O(log n) amortised. The loop bounds its wait by
 * ovl__timers_wait_ns and runs ovl__timers_run after each poll.
 *
 * A connection holds at most one ovl_conn_timer; it leaves the heap when it fires, when it is cancelled, and when
 * the connection starts closing, so a timer never fires for a closing connection and a freed one is never in the
 * heap.
 */
#include "internal.h"

#include <errno.h>

#define MAX_WAIT_NS (3600ull * 1000000000ull)

/* Two heaps into one: the later root becomes the earlier one's first child. Both arguments are roots (no parent,
 * no sibling); so is the result. */
static struct ovl__timer *meld(struct ovl__timer *a, struct ovl__timer *b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (b->at_ns < a->at_ns) {
        struct ovl__timer *swap = a;
        a = b;
        b = swap;
    }
    b->prev = a;
    b->sibling = a->child;
    if (a->child)
        a->child->prev = b;
    a->child = b;
    a->sibling = a->prev = NULL;
    return a;
}

/* The children of a removed node, from `first` on, into one heap: meld them in pairs left to right, then the pairs
 * right to left (the two passes that give the pairing heap its amortised O(log n)). */
static struct ovl__timer *merge_pairs(struct ovl__timer *first)
{
    struct ovl__timer *pairs = NULL; /* pass one's results, the rightmost first, linked through sibling */
    while (first) {
        struct ovl__timer *a = first, *b = a->sibling;
        if (!b) {
            a->prev = NULL;
            a->sibling = pairs;
            pairs = a;
            break;
        }
        first = b->sibling;
        a->sibling = b->sibling = NULL;
        struct ovl__timer *pair = meld(a, b);
        pair->sibling = pairs;
        pairs = pair;
    }
    struct ovl__timer *root = NULL;
    while (pairs) {
        struct ovl__timer *next = pairs->sibling;
        pairs->sibling = pairs->prev = NULL;
        root = meld(root, pairs);
        pairs = next;
    }
    return root;
}

void ovl__timer_stop(struct ovl__worker *worker, struct ovl__timer *timer)
{
    if (!timer->armed)
        return;
    struct ovl__timer_heap *heap = &worker->timers;
    if (timer == heap->root) {
        heap->root = merge_pairs(timer->child);
    } else {
        /* prev is the parent when the timer is a first child, else the sibling before it. */
        if (timer->prev->child == timer)
            timer->prev->child = timer->sibling;
        else
            timer->prev->sibling = timer->sibling;
        if (timer->sibling)
            timer->sibling->prev = timer->prev;
        heap->root = meld(heap->root, merge_pairs(timer->child));
    }
    timer->child = timer->sibling = timer->prev = NULL;
    timer->armed = false;
    heap->count--;
}

void ovl__timer_start(struct ovl__worker *worker, struct ovl__timer *timer, uint64_t at_ns)
{
    ovl__timer_stop(worker, timer);
    struct ovl__timer_heap *heap = &worker->timers;
    timer->at_ns = at_ns;
    timer->child = timer->sibling = timer->prev = NULL;
    timer->armed = true;
    heap->root = meld(heap->root, timer);
    heap->count++;
}

void ovl__timer_start_ms(struct ovl__worker *worker, struct ovl__timer *timer, uint64_t ms)
{
    ovl__timer_start(worker, timer, ovl__clock_ns() + ms * 1000000u);
}

static void conn_timer_fired(struct ovl__worker *worker, struct ovl__timer *timer)
{
    (void)worker;
    ovl_conn *conn = ovl__container_of(timer, ovl_conn, timer);
    conn->on_timer(conn);
}

int ovl_conn_timer(ovl_conn *conn, uint64_t delay_us, void (*on_timer)(ovl_conn *conn))
{
    if (!conn)
        return -EINVAL;
    if (!on_timer) {
        ovl__timer_stop(conn->worker, &conn->timer);
        return 0;
    }
    if (conn->flags & OVL__C_CLOSING)
        return -ENOTCONN;
    if (delay_us > UINT64_MAX / 2000)
        return -EINVAL;
    conn->on_timer = on_timer;
    conn->timer.fire = conn_timer_fired;
    ovl__timer_start(conn->worker, &conn->timer, ovl__clock_ns() + delay_us * 1000);
    return 0;
}

int64_t ovl__timers_wait_ns(const struct ovl__worker *worker, uint64_t now)
{
    const struct ovl__timer *root = worker->timers.root;
    if (!root)
        return -1;
    /* At most an hour: the backends add this to their clocks and round it, which a far deadline (ovl_conn_timer
     * accepts centuries) would overflow; waking once an hour to look again costs nothing. */
    uint64_t wait = root->at_ns <= now ? 0 : root->at_ns - now;
    return wait > MAX_WAIT_NS ? (int64_t)MAX_WAIT_NS : (int64_t)wait;
}

void ovl__timers_run(struct ovl__worker *worker)
{
    struct ovl__timer_heap *heap = &worker->timers;
    if (!heap->root)
        return;
    /* A clock read of its own, not the stamp taken as the wait returned: a timer that came due while the batch was
     * handled (or was armed in it to fire at once) fires in this turn, not after the next batch. */
    uint64_t now = ovl__clock_ns();
    /* Timers re-armed by their own callback with a short delay wait for the next turn: bounded by the count at
     * entry, one busy timer cannot keep the loop here. */
    for (uint32_t budget = heap->count; budget > 0 && heap->root && heap->root->at_ns <= now; budget--) {
        struct ovl__timer *timer = heap->root;
        ovl__timer_stop(worker, timer);
        timer->fire(worker, timer);
    }
}
