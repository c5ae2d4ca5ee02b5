"""The kubehunt Beam job: options, graph assembly and the `kubehunt` command line."""
