// src/loop/exceptions.cpp - exception types and their descriptions.
#include <asyncio/exceptions.hpp>

#include <cxxabi.h>
#include <system_error>
#include <typeinfo>

namespace asyncio {

IncompleteReadError::IncompleteReadError(std::string partial_bytes, std::ptrdiff_t expected_bytes)
    : std::runtime_error(std::to_string(partial_bytes.size()) + " bytes read on a total of " +
                         (expected_bytes < 0 ? std::string("undefined") : std::to_string(expected_bytes)) +
                         " expected bytes"),
      partial(std::move(partial_bytes)),
      expected(expected_bytes) {}

ExceptionGroup::ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions)
    : std::runtime_error(message + " (" + std::to_string(exceptions.size()) + " sub-exception" +
                         (exceptions.size() == 1 ? "" : "s") + ")"),
      message_(std::move(message)),
      exceptions_(std::move(exceptions)) {}

namespace {
std::string demangle(const char* name) {
    int status = 0;
    char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    std::string out = (status == 0 && d) ? d : name;
    std::free(d);
    return out;
}
}  // namespace

std::string describe_exception(const std::exception_ptr& e) {
    if (!e) return "None";
    try {
        std::rethrow_exception(e);
    } catch (const CancelledError& c) {
        return c.message().empty() ? "CancelledError()" : "CancelledError('" + c.message() + "')";
    } catch (const KeyboardInterrupt&) {
        return "KeyboardInterrupt()";
    } catch (const std::exception& x) {
        return demangle(typeid(x).name()) + "('" + x.what() + "')";
    } catch (...) {
        std::type_info* t = abi::__cxa_current_exception_type();
        return t ? demangle(t->name()) + "(...)" : "unknown exception";
    }
}

namespace {
/// Whether `e` holds an exception of type E (or derived).
template <class E>
bool holds(const std::exception_ptr& e) noexcept {
    if (!e) return false;
    try {
        std::rethrow_exception(e);
    } catch (const E&) {
        return true;
    } catch (...) {
        return false;
    }
}
}  // namespace

bool is_cancelled_error(const std::exception_ptr& e) noexcept { return holds<CancelledError>(e); }

bool is_keyboard_interrupt(const std::exception_ptr& e) noexcept { return holds<KeyboardInterrupt>(e); }

}  // namespace asyncio
