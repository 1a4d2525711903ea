# HTTP/2 (ctest entries h2_NAME): python3-h2's hpack and hyperframe exist for
# the system interpreter only (FERRY_WS_PYTHON, as for the websocket test);
# the tests skip, saying so, without them.
function(ferry_h2 timeout)
  foreach(name ${ARGN})
    add_test(NAME h2_${name}
             COMMAND ${FERRY_WS_PYTHON} -B ${CMAKE_CURRENT_SOURCE_DIR}/test_h2.py
                     ${FERRY_IT_ARGS} ${name})
    set_tests_properties(h2_${name} PROPERTIES
                         TIMEOUT ${timeout} SKIP_RETURN_CODE 77 LABELS integration)
  endforeach()
endfunction()
ferry_h2(60 clients alpn_choice config_errors bodies fields backpressure abuse hpack_bomb
  graceful_stop reload_goaway idle_timeout reset_mid_response reset_uploads_keep_window
  reset_frees_upstream header_block_timeout early_answer_not_cut)
ferry_h2(120 corpus)
