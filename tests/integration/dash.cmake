# The admin dashboard (issue 19): ctest entries dash_NAME. dash_page and
# dash_json need only python3; dash_browser drives Debian's chromium through
# chromium-driver with python3-selenium, which exists for the system
# interpreter only (FERRY_WS_PYTHON, as for the websocket test). It skips
# (code 77, reason printed) only where Chromium cannot start, and leaves its
# screenshot in the build directory (dashboard.png; the README's is a copy).
ferry_it(dash test_dash.py 60 page json)
add_test(NAME dash_browser
         COMMAND ${FERRY_WS_PYTHON} -B ${CMAKE_CURRENT_SOURCE_DIR}/test_dash.py
                 ${FERRY_IT_ARGS} browser)
set_tests_properties(dash_browser PROPERTIES
                     TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS integration
                     ENVIRONMENT "FERRY_DASH_SCREENSHOT=${CMAKE_BINARY_DIR}/dashboard.png")
