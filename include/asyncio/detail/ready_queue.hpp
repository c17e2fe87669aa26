// asyncio/detail/ready_queue.hpp - the loop's intrusive FIFO of runnable items.
//
// Everything that "runs soon" - a call_soon handle, a task step, a done callback - is a
// ReadyItem embedded in the object that owns it, so scheduling never allocates. An item is in
// at most one list at a time: the ready queue or a future's list of done callbacks (the same
// link serves both, because a callback moves from the second to the first when the future
// completes).
#pragma once

#include <cstddef>
#include <string>

namespace asyncio::detail {

struct ReadyItem;

/// What the loop can do with an item: run it; discard it unrun from the ready queue (loop
/// closing); drop it from a future's callback list where it was never scheduled (callback
/// removed, future destroyed or abandoned); describe it (debug mode's slow-callback log);
/// abandon it, for an item the loop owns (a pending task) when it closes.
struct ReadyItemOps {
    void (*run)(ReadyItem*);
    void (*discard)(ReadyItem*) noexcept;
    void (*drop)(ReadyItem*) noexcept;
    std::string (*describe)(const ReadyItem*);
    // Items that can also sit in the timer queue (TimerNode): fire, and keep alive.
    void (*timer_fire)(ReadyItem*) = nullptr;
    void (*add_ref)(ReadyItem*) noexcept = nullptr;
    void (*release)(ReadyItem*) noexcept = nullptr;
    // Done callbacks: called when the future completes and moves the item to the ready
    // queue (a callback keeps what it needs alive while queued).
    void (*on_schedule)(ReadyItem*) noexcept = nullptr;
    // Items the loop owns until they finish (tasks): the loop is closing - let go of the
    // item unfinished, unregistering it from the loop.
    void (*abandon)(ReadyItem*) noexcept = nullptr;
};

struct ReadyItem {
    const ReadyItemOps* ops = nullptr;
    ReadyItem* next = nullptr;
};

/// A future's done callbacks: a head-only singly linked FIFO (one pointer per future; a
/// future rarely has more than one or two callbacks, so appending walks a short list).
class CallbackList {
public:
    bool empty() const noexcept { return head_ == nullptr; }
    void push_back(ReadyItem* item) noexcept {
        item->next = nullptr;
        ReadyItem** slot = &head_;
        while (*slot) slot = &(*slot)->next;
        *slot = item;
    }
    ReadyItem* pop_front() noexcept {
        ReadyItem* item = head_;
        if (item) {
            head_ = item->next;
            item->next = nullptr;
        }
        return item;
    }
    bool remove(ReadyItem* item) noexcept {
        for (ReadyItem** slot = &head_; *slot; slot = &(*slot)->next) {
            if (*slot == item) {
                *slot = item->next;
                item->next = nullptr;
                return true;
            }
        }
        return false;
    }
    /// Moves all items out, leaving this list empty.
    CallbackList take_all() noexcept {
        CallbackList out;
        out.head_ = head_;
        head_ = nullptr;
        return out;
    }

private:
    ReadyItem* head_ = nullptr;
};

/// Singly linked FIFO with O(1) push/pop and O(n) removal of an arbitrary item.
class ItemList {
public:
    bool empty() const noexcept { return head_ == nullptr; }
    std::size_t size() const noexcept { return size_; }
    ReadyItem* front() const noexcept { return head_; }
    ReadyItem* back() const noexcept { return tail_; }

    void push_back(ReadyItem* item) noexcept {
        item->next = nullptr;
        if (tail_)
            tail_->next = item;
        else
            head_ = item;
        tail_ = item;
        ++size_;
    }
    ReadyItem* pop_front() noexcept {
        ReadyItem* item = head_;
        if (item) {
            head_ = item->next;
            if (!head_) tail_ = nullptr;
            item->next = nullptr;
            --size_;
        }
        return item;
    }
    /// Removes `item` if present; returns whether it was.
    bool remove(ReadyItem* item) noexcept {
        ReadyItem* prev = nullptr;
        for (ReadyItem* it = head_; it; prev = it, it = it->next) {
            if (it != item) continue;
            if (prev)
                prev->next = it->next;
            else
                head_ = it->next;
            if (tail_ == it) tail_ = prev;
            it->next = nullptr;
            --size_;
            return true;
        }
        return false;
    }
    /// Appends all of `other`'s items (leaving it empty).
    void append(ItemList&& other) noexcept {
        if (other.empty()) return;
        if (tail_)
            tail_->next = other.head_;
        else
            head_ = other.head_;
        tail_ = other.tail_;
        size_ += other.size_;
        other.head_ = other.tail_ = nullptr;
        other.size_ = 0;
    }
    /// Moves all items out, leaving this list empty.
    ItemList take_all() noexcept {
        ItemList out;
        out.head_ = head_;
        out.tail_ = tail_;
        out.size_ = size_;
        head_ = tail_ = nullptr;
        size_ = 0;
        return out;
    }
    bool contains(const ReadyItem* item) const noexcept {
        for (ReadyItem* it = head_; it; it = it->next)
            if (it == item) return true;
        return false;
    }

private:
    ReadyItem* head_ = nullptr;
    ReadyItem* tail_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace asyncio::detail
