-- The hydraulic model behind the water layers (issue 15; decision 0054, amended): the EPANET
-- text as `cityops gis import-epanet` read it, with the layers' versions it produced. The layers
-- keep the network's geometry and attributes, but no pump curves, valve settings, tank shapes,
-- patterns or controls; rebuilt from them alone, a pumped network such as ky10 draws a vacuum.
-- While the layers are still at those versions, the model is this text (its coordinates taken
-- from the layers); once a layer is reloaded otherwise, the model is rebuilt from the layers.
CREATE TABLE water_model_source (
    id             int PRIMARY KEY DEFAULT 1 CHECK (id = 1),  -- one: the current water layers'
    inp            text NOT NULL,
    file_name      text NOT NULL,
    nodes_version  int NOT NULL,
    pipes_version  int NOT NULL,
    imported_at    timestamptz NOT NULL DEFAULT now()
);
