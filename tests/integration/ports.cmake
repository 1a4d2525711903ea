# Ephemeral port economy (issue 8): `[upstream] source`, the addrnotavail
# counter, the port metrics. ctest entries ports_NAME, one per test function
# test_NAME in test_ports.py. Included from CMakeLists.txt, whose
# FERRY_IT_ARGS (--ferry, --upstream) they use. They need root (a network
# namespace each, with a 100-port range) and skip (77) without it.
function(ferry_ports timeout)
  ferry_it(ports test_ports.py ${timeout} ${ARGN})
endfunction()

ferry_ports(90 one_source two_sources source_fallback)
