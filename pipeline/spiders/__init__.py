"""The spiders: ``pages``, from folder, file, URL and sitemap starts to page items."""
