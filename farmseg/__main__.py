from farmseg._entry import run

run()
