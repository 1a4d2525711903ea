# Operations tests (issue 4): workers, reload, admin and metrics, balancers,
# health checks, PROXY protocol, --explain. Included from CMakeLists.txt,
# whose FERRY_IT_ARGS (--ferry, --upstream) they use; shared helpers live in
# opslib.py. One ctest entry ops_NAME per test function test_NAME.
function(ferry_ops script timeout)
  ferry_it(ops ${script} ${timeout} ${ARGN})
endfunction()

ferry_ops(test_ops_reload.py 60
  workers_both_serve reload_add_route reload_invalid reload_inflight reload_listeners
  reload_removed_listener_conn graceful_stop_workers)
ferry_ops(test_ops_admin.py 60
  healthz healthcheck_cli metrics_counts metrics_spec_names metrics_parser status_json sigusr1_reopens_access_log
  admin_any_address admin_405)
ferry_ops(test_ops_log.py 60
  access_log_escape_text access_log_escape_json access_log_reopen_under_load)
ferry_ops(test_ops_balance.py 60
  round_robin weights ip_hash least_conn random2 backup)
ferry_ops(test_ops_health.py 60
  active_check active_check_http_status passive)
ferry_ops(test_ops_proxy.py 60
  in_v1 in_v2 in_malformed out_tcp_v1 out_tcp_v2 out_http_v1 out_http_v2 in_out_chain
  in_from)
ferry_ops(test_ops_explain.py 60
  explain_precedence explain_exit_codes)

# TCP_NODELAY on ferry's client and upstream sockets, read from the process.
ferry_it(sock test_sockopts.py 30 client_nodelay_http client_nodelay_tcp)

# Several addresses per name (issue 17): ferry in its own mount namespace
# with a test-written /etc/hosts; skipped (77) without root or unshare.
ferry_ops(test_scale.py 60
  every_address dead_address_skipped set_follows_answers)

# watch_config (issue 17): rename, ConfigMap symlink swap, bad edit.
ferry_ops(test_watch.py 60
  watch_rename watch_symlink_swap watch_bad_edit)
