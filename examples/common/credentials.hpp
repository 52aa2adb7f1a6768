// The etcd credentials of the examples' programs (leader-worker, lock-exec), as etcdctl takes
// them: --user NAME with the password from --password-file FILE or an environment variable of
// the program's (the ways to prefer: neither is visible to other local users), or --user
// NAME:PASSWORD, or --password (both visible in /proc/PID/cmdline). The password is never
// printed. Definitions in credentials.cpp.
#pragma once

#include <optional>
#include <string>

namespace example_common {

/// What the command line said about the credentials.
struct CredentialFlags {
  std::string user;             // --user NAME or NAME:PASSWORD
  bool password_given = false;  // --password (its value is already in `password`)
  bool file_given = false;      // --password-file
  std::string password_file;    // its path
};

/// Fills `user` and `password` (which holds --password's value, if given) from `flags` and,
/// when only --user NAME is given, from $`variable`. `program` starts every message. Returns
/// an exit code (2) after one line on stderr when the flags do not fit together or the
/// password cannot be read.
std::optional<int> read_credentials(const char* program, const char* variable,
                                    CredentialFlags flags, std::string& user,
                                    std::string& password);

}  // namespace example_common
