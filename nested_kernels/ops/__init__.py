"""The operators of SPEC §2–§5, one folder each: public function, state, backends."""
