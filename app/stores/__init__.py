"""What the relay keeps in Redis, one store per kind, and the Context that holds them for a process."""
