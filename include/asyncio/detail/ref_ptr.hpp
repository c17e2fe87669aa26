// asyncio/detail/ref_ptr.hpp - a minimal intrusive reference-counting pointer.
//
// The runtime's shared states (futures, tasks, handles) are single-threaded objects with an
// embedded, non-atomic count: T provides add_ref() and release(). Handles are copied on the
// loop's thread only (like Python objects), so no atomics are needed.
#pragma once

#include <cstddef>
#include <utility>

namespace asyncio::detail {

template <class T>
class RefPtr {
public:
    RefPtr() noexcept = default;
    RefPtr(std::nullptr_t) noexcept {}
    /// Adopts one reference the caller already holds.
    static RefPtr adopt(T* p) noexcept {
        RefPtr r;
        r.p_ = p;
        return r;
    }
    /// Takes a new reference.
    explicit RefPtr(T* p) noexcept : p_(p) {
        if (p_) p_->add_ref();
    }
    RefPtr(const RefPtr& o) noexcept : p_(o.p_) {
        if (p_) p_->add_ref();
    }
    RefPtr(RefPtr&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    template <class U>
    RefPtr(const RefPtr<U>& o) noexcept : p_(o.get()) {
        if (p_) p_->add_ref();
    }
    template <class U>
    RefPtr(RefPtr<U>&& o) noexcept : p_(o.detach()) {}
    RefPtr& operator=(RefPtr o) noexcept {
        std::swap(p_, o.p_);
        return *this;
    }
    ~RefPtr() {
        if (p_) p_->release();
    }
    T* get() const noexcept { return p_; }
    T* operator->() const noexcept { return p_; }
    T& operator*() const noexcept { return *p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }
    /// Gives up ownership of the reference without releasing it.
    T* detach() noexcept { return std::exchange(p_, nullptr); }
    void reset() noexcept {
        if (T* p = std::exchange(p_, nullptr)) p->release();
    }
    friend bool operator==(const RefPtr& a, const RefPtr& b) noexcept { return a.p_ == b.p_; }

private:
    T* p_ = nullptr;
};

}  // namespace asyncio::detail
