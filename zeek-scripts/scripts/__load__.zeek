# Loaded by "@load tunnelhound" once zkg has installed the package.
@load ./main
@load ./intel
@load ./websocket
