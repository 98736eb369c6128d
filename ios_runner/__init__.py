"""The iOS runner app (Swift sources, project spec, JSON schemas) and its Python job/result
codec."""
