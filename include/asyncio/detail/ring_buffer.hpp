// asyncio/detail/ring_buffer.hpp - the FIFO storage of Queue<T> (queues.hpp).
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace asyncio::detail {

/// A growable ring buffer: the FIFO storage of Queue<T>. Allocates nothing until the first
/// push and never shrinks, so a steady put/get stream allocates nothing at all (a std::deque
/// frees and allocates a block every few hundred items). Works with move-only T.
template <class T>
class RingBuffer {
public:
    RingBuffer() = default;
    RingBuffer(const RingBuffer&) = delete;
    RingBuffer& operator=(const RingBuffer&) = delete;
    ~RingBuffer() {
        clear();
        if (data_) std::allocator<T>().deallocate(data_, cap_);
    }

    bool empty() const noexcept { return size_ == 0; }
    std::size_t size() const noexcept { return size_; }

    template <class U>
    void push_back(U&& v) {
        if (size_ == cap_) grow();
        ::new (static_cast<void*>(data_ + ((head_ + size_) & (cap_ - 1)))) T(std::forward<U>(v));
        ++size_;
    }
    /// Removes and returns the front item (precondition: not empty).
    T pop_front() {
        T& slot = data_[head_];
        T v(std::move(slot));
        slot.~T();
        head_ = (head_ + 1) & (cap_ - 1);
        --size_;
        return v;
    }
    /// The i-th item from the front (for repr()).
    const T& operator[](std::size_t i) const noexcept { return data_[(head_ + i) & (cap_ - 1)]; }
    void clear() noexcept {
        while (size_) {
            data_[head_].~T();
            head_ = (head_ + 1) & (cap_ - 1);
            --size_;
        }
        head_ = 0;
    }

private:
    void grow() {
        std::size_t ncap = cap_ ? cap_ * 2 : 8;
        T* nd = std::allocator<T>().allocate(ncap);
        std::size_t moved = 0;
        try {
            for (; moved < size_; ++moved) {
                ::new (static_cast<void*>(nd + moved)) T(std::move_if_noexcept((*this)[moved]));
            }
        } catch (...) {
            for (std::size_t i = 0; i < moved; ++i) nd[i].~T();
            std::allocator<T>().deallocate(nd, ncap);
            throw;
        }
        std::size_t n = size_;
        clear();
        if (data_) std::allocator<T>().deallocate(data_, cap_);
        data_ = nd;
        cap_ = ncap;
        head_ = 0;
        size_ = n;
    }
    // operator[] for the move in grow() must yield a non-const T&.
    T& operator[](std::size_t i) noexcept { return data_[(head_ + i) & (cap_ - 1)]; }

    T* data_ = nullptr;
    std::size_t cap_ = 0;  // 0 or a power of two
    std::size_t head_ = 0;
    std::size_t size_ = 0;
};

}  // namespace asyncio::detail
