"""Neo4j: the managed local server, the schema, the MAG graph store, jobs and read-only Cypher."""
