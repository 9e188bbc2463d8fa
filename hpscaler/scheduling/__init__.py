"""The pure core: requirement algebra, launch options, topology, packing, consolidation decisions."""
