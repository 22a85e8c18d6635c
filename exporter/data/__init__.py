"""Package data: the bundled trained fixture model (w2vbert-digits/) and make_fixture, which builds it."""
