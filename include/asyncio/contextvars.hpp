// asyncio/contextvars.hpp - context variables (Python's contextvars, as asyncio uses them).
//
//     asyncio::ContextVar<std::string> request_id("request_id", "-");
//     auto token = request_id.set("abc");   // visible to this task and the tasks it creates
//     request_id.get();                      // "abc"
//     request_id.reset(token);               // back to what it was
//
// Each task runs in a copy of the context that was current when it was created
// (create_task), so a set() inside a task is invisible to its parent and siblings; to_thread
// runs its function in a copy of the caller's context; Context::run(fn) runs fn in a given
// context. Outside any task, each thread has its own context.
#pragma once

#include <asyncio/exceptions.hpp>

#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace asyncio {

namespace detail {
/// An immutable mapping ContextVar -> value; a new map is made for every set() (the maps are
/// small and shared by every task that copied the context).
using ContextMap = std::map<const void*, std::shared_ptr<const void>>;
using ContextMapPtr = std::shared_ptr<const ContextMap>;

/// The mapping of the context in effect right now (Context::run > current task > thread).
const ContextMapPtr& current_context_map() noexcept;
/// Replaces the mapping of the context in effect right now.
void set_current_context_map(ContextMapPtr map);
/// Identifies the context in effect right now (a Context object, a task, or the thread).
const void* current_context_id() noexcept;
/// False until this thread first sets a ContextVar or enters a Context: until then every
/// context is empty and creating a task has nothing to copy (the common, fast case).
extern thread_local constinit bool tl_context_used;
}  // namespace detail

namespace detail {
struct ContextRunScope;
}

/// A snapshot of context variables that code can run in (Python's contextvars.Context).
class Context {
public:
    Context() = default;
    explicit Context(detail::ContextMapPtr map) : map_(std::move(map)) {}
    /// Runs fn() with this context current; what fn sets is recorded in this Context.
    template <class F>
    decltype(auto) run(F&& fn);
    /// Number of variables set in this context.
    std::size_t size() const noexcept { return map_ ? map_->size() : 0; }
    const detail::ContextMapPtr& map() const noexcept { return map_; }

private:
    friend struct detail::ContextRunScope;
    detail::ContextMapPtr map_;
};

/// A copy of the current context (Python's contextvars.copy_context()).
inline Context copy_context() { return Context(detail::current_context_map()); }

namespace detail {
/// Makes a Context current for a scope (used by Context::run).
struct ContextRunScope {
    explicit ContextRunScope(Context& ctx);
    ~ContextRunScope();
    ContextRunScope(const ContextRunScope&) = delete;
    ContextRunScope& operator=(const ContextRunScope&) = delete;

private:
    Context& ctx_;
    Context* previous_;
};
}  // namespace detail

template <class F>
decltype(auto) Context::run(F&& fn) {
    detail::ContextRunScope scope(*this);
    return std::forward<F>(fn)();
}

template <class T>
class ContextVar;

/// What ContextVar::set() returns; reset(token) restores the previous value.
template <class T>
class Token {
public:
    const ContextVar<T>& var() const noexcept { return *var_; }
    /// The value before set(), or nullopt if the variable was unset (Python's Token.MISSING).
    const std::optional<T>& old_value() const noexcept { return old_; }

private:
    friend class ContextVar<T>;
    Token(const ContextVar<T>* var, const void* context_id, std::optional<T> old)
        : var_(var), context_id_(context_id), old_(std::move(old)) {}
    const ContextVar<T>* var_;
    const void* context_id_;  // the context the set() happened in
    std::optional<T> old_;
    bool used_ = false;
};

template <class T>
class ContextVar {
public:
    explicit ContextVar(std::string name) : name_(std::move(name)) {}
    ContextVar(std::string name, T default_value) : name_(std::move(name)), default_(std::move(default_value)) {}
    ContextVar(const ContextVar&) = delete;  // a variable is identified by its address
    ContextVar& operator=(const ContextVar&) = delete;

    const std::string& name() const noexcept { return name_; }

    /// The value in the current context, else the default; std::out_of_range (Python's
    /// LookupError) when neither exists.
    T get() const {
        if (const T* v = lookup()) return *v;
        if (default_) return *default_;
        throw std::out_of_range("LookupError: ContextVar '" + name_ + "' has no value");
    }
    /// The value in the current context, else `fallback` (Python's var.get(default)).
    T get(T fallback) const {
        if (const T* v = lookup()) return *v;
        return fallback;
    }

    /// Sets the value in the current context; returns a Token for reset().
    Token<T> set(T value) {
        const detail::ContextMapPtr& current = detail::current_context_map();
        std::optional<T> old;
        if (const T* v = lookup()) old = *v;
        auto next = current ? std::make_shared<detail::ContextMap>(*current) : std::make_shared<detail::ContextMap>();
        (*next)[this] = std::make_shared<const T>(std::move(value));
        detail::set_current_context_map(std::move(next));
        return Token<T>(this, detail::current_context_id(), std::move(old));
    }

    /// Restores the value from before the set() that made `token`. std::invalid_argument
    /// (Python's ValueError) for a token of another variable or made in another context;
    /// asyncio::RuntimeError if the token was already used.
    void reset(Token<T>& token) {
        if (token.used_) throw RuntimeError("Token has already been used once");
        if (token.var_ != this) throw std::invalid_argument("Token was created by a different ContextVar");
        if (token.context_id_ != detail::current_context_id())
            throw std::invalid_argument("Token was created in a different Context");
        const detail::ContextMapPtr& current = detail::current_context_map();
        auto next = current ? std::make_shared<detail::ContextMap>(*current) : std::make_shared<detail::ContextMap>();
        if (token.old_)
            (*next)[this] = std::make_shared<const T>(*token.old_);
        else
            next->erase(this);
        detail::set_current_context_map(std::move(next));
        token.used_ = true;
    }

private:
    const T* lookup() const {
        const detail::ContextMapPtr& m = detail::current_context_map();
        if (!m) return nullptr;
        auto it = m->find(this);
        return it == m->end() ? nullptr : static_cast<const T*>(it->second.get());
    }
    std::string name_;
    std::optional<T> default_;
};

}  // namespace asyncio
