// asyncio/detail/intrusive_list.hpp - the one intrusive doubly linked list (loop resources, async
// generators, queue waiters, backend operation queues). An element derives from ListNode; the
// list is circular through a sentinel: push, pop and unlink are O(1) and branch-free, and a node
// unlinks itself without its list (next == nullptr: unlinked). It owns and allocates nothing, is
// not copyable or movable, and leaves its elements alone when destroyed (clear() first).
#pragma once

#include <cstddef>

namespace asyncio::detail {

/// The links of an element. A node is in at most one list at a time. Copying a node copies
/// no links: the copy starts unlinked, and assigning leaves the target's links alone.
struct ListNode {
    ListNode* prev = nullptr;
    ListNode* next = nullptr;

    ListNode() noexcept = default;
    ListNode(const ListNode&) noexcept {}
    ListNode& operator=(const ListNode&) noexcept { return *this; }

    bool linked() const noexcept { return next != nullptr; }
    /// Takes the node out of its list (precondition: linked()).
    void unlink() noexcept {
        prev->next = next;
        next->prev = prev;
        next = nullptr;  // what linked() reads; `prev` is rewritten when the node is linked again
    }
};

/// A list of T (which derives publicly from ListNode).
template <class T>
class IntrusiveList {
public:
    IntrusiveList() noexcept { head_.prev = head_.next = &head_; }
    IntrusiveList(const IntrusiveList&) = delete;
    IntrusiveList& operator=(const IntrusiveList&) = delete;

    bool empty() const noexcept { return head_.next == &head_; }
    /// The first / last element, or nullptr when empty.
    T* front() const noexcept { return empty() ? nullptr : static_cast<T*>(head_.next); }
    T* back() const noexcept { return empty() ? nullptr : static_cast<T*>(head_.prev); }

    void push_back(T& n) noexcept { link_before(&head_, n); }
    void push_front(T& n) noexcept { link_before(head_.next, n); }
    /// Unlinks and returns the first element; nullptr when empty.
    T* pop_front() noexcept {
        if (empty()) return nullptr;
        ListNode* n = head_.next;
        n->unlink();
        return static_cast<T*>(n);
    }
    /// Unlinks `n` if it is linked (it must then be in this list); returns whether it was.
    static bool remove(T& n) noexcept {
        if (!n.linked()) return false;
        n.ListNode::unlink();
        return true;
    }
    /// Unlinks every element.
    void clear() noexcept {
        while (!empty()) head_.next->unlink();
    }
    /// Number of elements: O(n).
    std::size_t size() const noexcept {
        std::size_t n = 0;
        for (const ListNode* p = head_.next; p != &head_; p = p->next) ++n;
        return n;
    }
    /// Front-to-back iteration (range-for); the loop body must not unlink elements (use
    /// for_each() for that).
    class iterator {
    public:
        explicit iterator(ListNode* p) noexcept : p_(p) {}
        T& operator*() const noexcept { return *static_cast<T*>(p_); }
        T* operator->() const noexcept { return static_cast<T*>(p_); }
        iterator& operator++() noexcept {
            p_ = p_->next;
            return *this;
        }
        bool operator==(const iterator& o) const noexcept { return p_ == o.p_; }

    private:
        ListNode* p_;
    };
    iterator begin() const noexcept { return iterator(head_.next); }
    iterator end() const noexcept { return iterator(const_cast<ListNode*>(&head_)); }

    /// Calls fn(T&) for each element, front to back; fn may unlink the element it is given
    /// (not others).
    template <class F>
    void for_each(F&& fn) {
        for (ListNode* p = head_.next; p != &head_;) {
            ListNode* next = p->next;
            fn(*static_cast<T*>(p));
            p = next;
        }
    }

private:
    static void link_before(ListNode* pos, T& t) noexcept {
        ListNode* n = &t;
        ListNode* before = pos->prev;
        before->next = n;
        n->prev = before;
        n->next = pos;
        pos->prev = n;
    }
    ListNode head_;  // the sentinel: head_.next is the front, head_.prev the back
};

}  // namespace asyncio::detail
