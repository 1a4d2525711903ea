# Fault injection tests (issue 6, "Faults"): upstream SIGKILL under load,
# resets mid-body both ways in both modes, trickling upstreams and clients,
# descriptor exhaustion in http mode, thousands of idle connections.
# Included from CMakeLists.txt (FERRY_IT_ARGS). One ctest entry fault_NAME
# per test function test_NAME in test_faults.py.
function(ferry_fault script timeout)
  ferry_it(fault ${script} ${timeout} ${ARGN})
endfunction()

ferry_fault(test_faults.py 60
  upstream_sigkill_under_load
  upstream_reset_mid_body_http upstream_reset_mid_body_tcp
  client_reset_mid_body_http client_reset_mid_body_tcp
  trickle_upstream trickle_client trickle_client_progress_http trickle_client_progress_tcp
  fd_exhaustion_http many_connections)

# Memory given back after a burst (slab, buffer decay, memtrim).
ferry_it(mem test_memory.py 60 burst_memory_returns)
