import { useQuery } from '@tanstack/react-query';
import { useEffect, useId } from 'react';
import { api, type ModelSummary } from './coordinator-api.ts';
import { useHashParam } from './route.ts';

/** The registered models (GET /api/models), refreshed as volunteers come and go. */
export function useModels() {
  return useQuery({ queryKey: ['swarm', 'models'], queryFn: () => api.models(), refetchInterval: 10_000 });
}

/**
 * The models and the one the page shows: the URL's `?model=` when it names a registered model, else the first
 * (written back to the URL so a reload or a shared link shows the same).
 */
export function useChosenModel() {
  const models = useModels();
  const [chosen, choose] = useHashParam('model');
  const list = models.data ?? [];
  const selected = list.find((m) => m.id === chosen) ?? list[0];
  // Runs when the chosen id changes, not on every new list object.
  // biome-ignore lint/correctness/useExhaustiveDependencies: keyed by the ids on purpose
  useEffect(() => {
    if (selected && selected.id !== chosen) choose(selected.id);
  }, [selected?.id, chosen]);
  return { models, list, selected, choose };
}

/** A labelled model select; the pages keep the choice in the URL (#/researcher?model=…). */
export function ModelPicker({
  models,
  value,
  onChange,
  label = 'Model',
}: {
  models: ModelSummary[];
  value?: string;
  onChange: (id: string) => void;
  label?: string;
}) {
  const id = useId();
  return (
    <div className="model-picker">
      <label htmlFor={id}>{label}</label>
      <select id={id} value={value ?? ''} onChange={(e) => onChange(e.target.value)} data-testid="model-picker">
        {models.map((m) => (
          <option key={m.id} value={m.id}>
            {m.name} ({m.id})
          </option>
        ))}
      </select>
    </div>
  );
}
