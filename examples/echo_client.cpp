// examples/echo_client.cpp - the Python docs' "TCP echo client using streams", in C++.
//
//   ./echo_client [message] [port]      (talks to ./echo_server)
//
// Python:
//   async def tcp_echo_client(message):
//       reader, writer = await asyncio.open_connection('127.0.0.1', 8888)
//       print(f'Send: {message!r}')
//       writer.write(message.encode())
//       await writer.drain()
//       data = await reader.read(100)
//       print(f'Received: {data.decode()!r}')
//       print('Close the connection')
//       writer.close()
//       await writer.wait_closed()
#include <asyncio.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

asyncio::Coro<> tcp_echo_client(std::string message, int port) {
    auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port);
    std::printf("Send: '%s'\n", message.c_str());
    writer.write(message);
    co_await writer.drain();
    std::string data = co_await reader.read(100);
    std::printf("Received: '%s'\n", data.c_str());
    std::printf("Close the connection\n");
    writer.close();
    co_await writer.wait_closed();
}

int main(int argc, char** argv) {
    std::string message = argc > 1 ? argv[1] : "Hello World!";
    int port = argc > 2 ? std::atoi(argv[2]) : 8888;
    try {
        asyncio::run(tcp_echo_client(message, port));
    } catch (const std::system_error& e) {
        std::fprintf(stderr, "echo_client: %s (is ./echo_server running?)\n", e.what());
        return 1;
    }
}
