// A test program that dies the way an ASan report does, skipping every destructor: it starts a
// private etcd cluster with EtcdCluster::start, restarts member 1 (so that start-member's launch
// is covered too), writes the members' pids to PIDS_FILE, one a line, then calls std::abort().
// tests/support/leash_test.cpp runs it and checks that no etcd outlives it.
//
//   fixture-abort-probe DIR MEMBERS PIDS_FILE
#include "support/etcd_cluster.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include <sys/resource.h>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DIR MEMBERS PIDS_FILE\n", argv[0]);
    return 2;
  }
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);  // the abort is the point, its core file is not
  try {
    auto etcd = election::test::EtcdCluster::start(argv[1], std::stoi(argv[2]));
    etcd.restart_member(0);
    const std::string pids = argv[3];
    {
      std::ofstream out(pids + ".tmp");
      for (int i = 0; i < etcd.members(); ++i) out << etcd.pid(i) << '\n';
      if (!out.flush()) throw std::runtime_error("cannot write " + pids + ".tmp");
    }
    std::filesystem::rename(pids + ".tmp", pids);
    std::abort();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fixture-abort-probe: %s\n", e.what());
    return 1;
  }
}
