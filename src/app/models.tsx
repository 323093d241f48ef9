import { useQuery } from '@tanstack/react-query';
import { useId } from 'react';
import { api, type ModelSummary } from './coordinator-api.ts';

/** The registered models (GET /api/models), refreshed as volunteers come and go. */
export function useModels() {
  return useQuery({ queryKey: ['swarm', 'models'], queryFn: () => api.models(), refetchInterval: 10_000 });
}

/** A labelled model select; the pages keep the choice in the URL (#/researcher?model=…). */
export function ModelPicker({ models, value, onChange, label = 'Model' }: { models: ModelSummary[]; value?: string; onChange: (id: string) => void; label?: string }) {
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
