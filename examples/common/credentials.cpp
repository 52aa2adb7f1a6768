// The definition of credentials.hpp: which source of a password wins, and what is refused. Every
// message names a file or a variable, never a password.
#include "credentials.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <utility>

namespace example_common {

std::optional<int> read_credentials(const char* program, const char* variable,
                                    CredentialFlags flags, std::string& user,
                                    std::string& password) {
  auto& name = flags.user;
  const auto colon = name.find(':');
  const char* from_environment = std::getenv(variable);
  const bool in_environment = from_environment != nullptr && *from_environment != '\0';
  const bool given_apart = flags.password_given || flags.file_given;
  if (colon != std::string::npos && given_apart) {
    std::fprintf(stderr, "%s: --password or --password-file given, so --user must be NAME only\n",
                 program);
    return 2;
  }
  if (name.empty() && given_apart) {
    std::fprintf(stderr, "%s: --password and --password-file need --user\n", program);
    return 2;
  }
  if (flags.file_given) {
    // The file's first line; the message names the file, never its content.
    std::ifstream in(flags.password_file);
    if (!in || !std::getline(in, password)) {
      std::fprintf(stderr, "%s: --password-file %s: cannot read a line from it\n", program,
                   flags.password_file.c_str());
      return 2;
    }
    if (!password.empty() && password.back() == '\r') password.pop_back();
    if (password.empty()) {
      std::fprintf(stderr, "%s: --password-file %s: the first line is empty\n", program,
                   flags.password_file.c_str());
      return 2;
    }
  } else if (!name.empty() && colon == std::string::npos && !flags.password_given) {
    if (!in_environment) {
      std::fprintf(stderr,
                   "%s: --user NAME needs a password: --password-file FILE or $%s "
                   "(preferred), --user NAME:PASSWORD or --password\n",
                   program, variable);
      return 2;
    }
    password = from_environment;
  }
  if (colon != std::string::npos) {
    password = name.substr(colon + 1);
    name.erase(colon);
    if (name.empty()) {
      std::fprintf(stderr, "%s: --user: empty user name\n", program);
      return 2;
    }
  }
  user = std::move(name);
  return std::nullopt;
}

}  // namespace example_common
