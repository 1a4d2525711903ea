# docker-compose, container image and README checks (issue 7): ctest entries
# compose_NAME, one per test function test_NAME in test_compose.py. Included
# from CMakeLists.txt, whose FERRY_IT_ARGS (--ferry, --upstream) they use.
# compose_topology needs root (network namespaces) and skips (77) without it;
# compose_config skips when docker-compose is not installed.
function(ferry_compose timeout)
  ferry_it(compose test_compose.py ${timeout} ${ARGN})
endfunction()

ferry_compose(60 config readme_reference)
ferry_compose(120 topology)

# deploy/k8s and deploy/swarm, checked offline (issue 17): YAML parses, the
# objects fit together, ferry -t accepts their configs. Skips without
# python3-yaml.
ferry_it(deploy test_deploy.py 60 k8s swarm)
