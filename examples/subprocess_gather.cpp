// examples/subprocess_gather.cpp - the Python docs' subprocess example: run several commands
// at once and collect what each printed, in C++.
//
//   ./subprocess_gather ['cmd 1' 'cmd 2' ...]   (default: three shell commands)
//
// Python:
//   async def run(cmd):
//       proc = await asyncio.create_subprocess_shell(
//           cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
//       stdout, stderr = await proc.communicate()
//       print(f'[{cmd!r} exited with {proc.returncode}]')
//       if stdout: print(f'[stdout]\n{stdout.decode()}')
//       if stderr: print(f'[stderr]\n{stderr.decode()}')
//
//   async def main():
//       await asyncio.gather(run('ls /zzz'), run('sleep 1; echo "hello"'))
#include <asyncio.hpp>

#include <cstdio>
#include <string>
#include <vector>

asyncio::Coro<> run_command(std::string cmd) {
    asyncio::SubprocessOptions opts;
    opts.stdout_ = asyncio::PIPE;
    opts.stderr_ = asyncio::PIPE;
    asyncio::Process proc = co_await asyncio::create_subprocess_shell(cmd, opts);
    auto [out, err] = co_await proc.communicate();
    std::printf("['%s' exited with %d]\n", cmd.c_str(), *proc.returncode());
    if (!out.empty()) std::printf("[stdout]\n%s", out.c_str());
    if (!err.empty()) std::printf("[stderr]\n%s", err.c_str());
}

asyncio::Coro<> run_all(std::vector<std::string> commands) {
    std::vector<asyncio::Coro<>> runs;
    for (auto& cmd : commands) runs.push_back(run_command(cmd));
    co_await asyncio::gather(std::move(runs));  // they run at once: ~1 s in all, not 1 s each
}

int main(int argc, char** argv) {
    std::vector<std::string> commands(argv + 1, argv + argc);
    if (commands.empty()) commands = {"ls /zzz", "sleep 1; echo hello", "sleep 1; echo world >&2; exit 3"};
    asyncio::run(run_all(std::move(commands)));
}
