// Entry point only: libevent callbacks must not be formed in top-level code (they would inherit the main
// actor and trap when called from C), so everything lives in KVServer.
#if canImport(Glibc)
    import Glibc
#endif

exit(KVServer.main(arguments: Array(CommandLine.arguments.dropFirst())))
